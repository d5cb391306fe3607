"""fastrnn's tools: the ``fastrnn`` command (:mod:`~fastrnn.tools.cli`), the peer benchmark
(:mod:`~fastrnn.tools.bench`, ``python -m fastrnn.bench``) and the kernels' self-check
(:mod:`~fastrnn.tools.selfcheck`, ``fastrnn selfcheck``). Nothing else in fastrnn imports them."""
