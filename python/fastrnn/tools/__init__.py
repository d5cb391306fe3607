"""fastrnn's tools: the ``fastrnn`` command (:mod:`~fastrnn.tools.cli`, its options and the
subcommands' modules: :mod:`~fastrnn.tools.seq2seq_cli`), the peer benchmark
(:mod:`~fastrnn.tools.bench`, ``python -m fastrnn.bench``, with the bfloat16, int8 and
sequence-to-sequence tables of :mod:`~fastrnn.tools.bench_bf16`,
:mod:`~fastrnn.tools.bench_int8` and :mod:`~fastrnn.tools.bench_seq2seq`, and the PyTorch model
they time, :mod:`~fastrnn.tools.seq2seq_torch`) and the kernels' self-check
(:mod:`~fastrnn.tools.selfcheck`, ``fastrnn selfcheck``). Nothing else in fastrnn imports them;
:doc:`/training` and :doc:`/speed` show what they measure."""
