"""A :class:`fastrnn.training.seq2seq.Seq2Seq` written with torch ops: :class:`TorchSeq2Seq`.

The same model, layer for layer (``torch.nn.Embedding`` with ``padding_idx=0``,
``torch.nn.LSTM``/``GRU``/``RNN`` over ``pack_padded_sequence`` for the lengths, the attention in
torch ops with the padded source steps masked out of the softmax, ``torch.nn.Linear``), under the
same parameter names, so that :func:`from_seq2seq` copies a fastrnn model's weights into it by
name. Autograd gives its gradients; the PyTorch parity test (tests/test_seq2seq_torch.py) holds
the two models' logits, attention weights, loss and every gradient equal in float64, and
``python -m fastrnn.bench --seq2seq`` times a training step of each.

torch is optional: this module imports it, so import the module only where torch is wanted
(without torch installed it raises ImportError naming the extra).
"""

from __future__ import annotations

from typing import Any

try:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "fastrnn.tools.seq2seq_torch needs PyTorch, which is not installed: "
        'pip install "fastrnn[torch]" (or any torch with CPU support)'
    ) from e

import numpy as np

from ..training.seq2seq import PAD, Batch, Seq2Seq

__all__ = ["TorchAttention", "TorchSeq2Seq", "batch_tensors", "from_seq2seq"]

Tensor = torch.Tensor

# Seq2Seq's cells as torch.nn modules and their keyword arguments
_MODULES: dict[str, tuple[Any, dict[str, Any]]] = {
    "lstm": (torch.nn.LSTM, {}),
    "gru": (torch.nn.GRU, {}),
    "rnn": (torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"}),
}


class TorchAttention(torch.nn.Module):
    """:class:`fastrnn.training.attention.Attention` in torch ops, with its parameter names:
    ``weight (query_size, key_size)`` (general), ``query_weight (A, query_size)``,
    ``key_weight (A, key_size)``, ``v (A,)`` (additive), none (dot). The parameters are left
    uninitialised (``torch.empty``): :func:`from_seq2seq` copies them.

    Args:
        score: ``"dot"``, ``"general"`` or ``"additive"``.
        query_size, key_size: the features of a query and of a memory entry.
        attn_size: ``A``, the additive score's hidden size (unused by the others).

    Raises:
        ValueError: an unknown ``score``.
    """

    def __init__(self, score: str, query_size: int, key_size: int, attn_size: int) -> None:
        super().__init__()
        self.score = score
        if score == "general":
            self.weight = torch.nn.Parameter(torch.empty(query_size, key_size))
        elif score == "additive":
            self.query_weight = torch.nn.Parameter(torch.empty(attn_size, query_size))
            self.key_weight = torch.nn.Parameter(torch.empty(attn_size, key_size))
            self.v = torch.nn.Parameter(torch.empty(attn_size))
        elif score != "dot":
            raise ValueError(f"score: expected dot, general or additive, got {score!r}")

    def forward(self, query: Tensor, values: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Every query step attends over the valid steps of ``values``.

        Args:
            query: ``(Tq, B, query_size)``.
            values: the encoder's outputs ``(Tk, B, key_size)``.
            lengths: the valid steps of each sequence ``(B,)``, int64.

        Returns:
            ``(context (Tq, B, key_size), weights (Tq, B, Tk))``, the weights 0 beyond each
            length.
        """
        if self.score == "additive":
            keys = values @ self.key_weight.T  # (Tk, B, A)
            qs = query @ self.query_weight.T  # (Tq, B, A)
            # e[t, b, j] = v . tanh(W_q q_t + W_k h_j)
            e = torch.tanh(qs[:, :, None, :] + keys.permute(1, 0, 2)[None]) @ self.v
        else:
            keys = values @ self.weight.T if self.score == "general" else values
            e = torch.einsum("qbd,kbd->qbk", query, keys)  # q_t . keys_j
        Tk = values.shape[0]
        padded = torch.arange(Tk)[None, :] >= lengths[:, None]  # (B, Tk)
        weights = torch.softmax(e.masked_fill(padded[None], float("-inf")), dim=-1)
        context = torch.einsum("qbk,kbd->qbd", weights, values)
        return context, weights


class TorchSeq2Seq(torch.nn.Module):
    """The encoder-decoder of :class:`~fastrnn.training.seq2seq.Seq2Seq` in ``torch.nn``,
    built from its ``config`` (a Seq2Seq's :attr:`~fastrnn.training.seq2seq.Seq2Seq.config`):
    the parts ``src_embedding``, ``encoder``, ``tgt_embedding``, ``decoder``, ``attention``
    (absent without attention), ``combine``, ``out`` and their parameters under Seq2Seq's names.
    The parameters are torch's default initialisation in ``config["dtype"]``
    (:func:`from_seq2seq` copies a fastrnn model's).

    Args:
        config: a :class:`~fastrnn.training.seq2seq.Seq2Seq`'s ``config`` (as checked by its
            constructor; not checked again here).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        c = config
        cls, kw = _MODULES[c["cell"]]
        E, H, L = c["embedding_dim"], c["hidden_size"], c["num_layers"]
        self.directions = 2 if c["bidirectional"] else 1
        Hd = H * self.directions
        self.src_embedding = torch.nn.Embedding(c["src_vocab_size"], E, padding_idx=PAD)
        self.encoder = cls(E, H, L, bidirectional=c["bidirectional"], dropout=c["dropout"], **kw)
        self.tgt_embedding = torch.nn.Embedding(c["tgt_vocab_size"], E, padding_idx=PAD)
        self.decoder = cls(E, Hd, L, dropout=c["dropout"], **kw)
        self.attention: TorchAttention | None = None
        if c["attention"] is not None:
            A = Hd if c["attn_size"] is None else c["attn_size"]
            self.attention = TorchAttention(c["attention"], Hd, Hd, A)
        self.combine = torch.nn.Linear(2 * Hd if self.attention is not None else Hd, Hd)
        self.out = torch.nn.Linear(Hd, c["tgt_vocab_size"])
        self.to(getattr(torch, c["dtype"]))

    def _bridge(self, state: Tensor) -> Tensor:
        """The encoder's final state ``(L*D, B, H)`` as the decoder's initial state
        ``(L, B, D*H)``: each layer's directions side by side."""
        LD, B, H = state.shape
        D = self.directions
        return state.reshape(LD // D, D, B, H).permute(0, 2, 1, 3).reshape(LD // D, B, D * H)

    @staticmethod
    def _run(rnn: Any, x: Tensor, lengths: Tensor, hx: Any) -> tuple[Tensor, Any]:
        """``rnn`` over the padded ``x (T, B, E)`` with ``lengths``: ``(y (T, B, ·) zero beyond
        the lengths, final state (h_n, or (h_n, c_n)) at each sequence's last valid step)``."""
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        y, state = rnn(packed, hx)
        return pad_packed_sequence(y, total_length=x.shape[0])[0], state

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_lengths: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing, as :meth:`Seq2Seq.forward <fastrnn.training.seq2seq.Seq2Seq.forward>`
        (:func:`batch_tensors` makes the arguments of a :class:`~fastrnn.training.seq2seq.Batch`).

        Args:
            src: source ids ``(Ts, B)``, int64.
            src_lengths: ``(B,)``, int64, on the CPU.
            tgt_in: the decoder's input ids ``(Tt, B)``, int64.
            tgt_lengths: ``(B,)``, int64, on the CPU.

        Returns:
            ``(logits (Tt, B, tgt_vocab_size), weights)``: the attention weights ``(Tt, B, Ts)``,
            zero on padded target steps, or None without attention.
        """
        enc_out, state = self._run(self.encoder, self.src_embedding(src), src_lengths, None)
        if isinstance(state, tuple):
            state = tuple(self._bridge(s) for s in state)
        else:
            state = self._bridge(state)
        dec_out, _ = self._run(self.decoder, self.tgt_embedding(tgt_in), tgt_lengths, state)
        weights = None
        z = dec_out
        if self.attention is not None:
            context, weights = self.attention(dec_out, enc_out, src_lengths)
            z = torch.cat([context, dec_out], dim=-1)
            steps = torch.arange(tgt_in.shape[0])[:, None] < tgt_lengths[None, :]  # (Tt, B)
            weights = weights * steps[:, :, None]
        return self.out(torch.tanh(self.combine(z))), weights

    @staticmethod
    def loss(logits: Tensor, tgt_out: Tensor, tgt_lengths: Tensor) -> Tensor:
        """The mean cross-entropy over the steps within ``tgt_lengths``, as
        :meth:`Seq2Seq.loss <fastrnn.training.seq2seq.Seq2Seq.loss>`.

        Args:
            logits: :meth:`forward`'s, ``(Tt, B, V)``.
            tgt_out: the target ids ``(Tt, B)``, int64.
            tgt_lengths: ``(B,)``, int64.

        Returns:
            The loss, a 0-d tensor.
        """
        steps = torch.arange(tgt_out.shape[0])[:, None] < tgt_lengths[None, :]
        targets = torch.where(steps, tgt_out, PAD)
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD
        )


def batch_tensors(batch: Batch) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """A :class:`~fastrnn.training.seq2seq.Batch` as int64 tensors (copies: the batch's arrays
    are read-only).

    Returns:
        ``(src (Ts, B), src_lengths (B,), tgt_in (Tt, B), tgt_out (Tt, B), tgt_lengths (B,))``.
    """
    return (
        torch.tensor(batch.src),
        torch.tensor(batch.src_lengths),
        torch.tensor(batch.tgt_in),
        torch.tensor(batch.tgt_out),
        torch.tensor(batch.tgt_lengths),
    )


def from_seq2seq(model: Seq2Seq) -> TorchSeq2Seq:
    """A :class:`TorchSeq2Seq` of ``model``'s configuration, in its dtype, holding copies of its
    parameters (every one, by name).

    Args:
        model: a fastrnn :class:`~fastrnn.training.seq2seq.Seq2Seq`.

    Returns:
        The torch model.

    Raises:
        TypeError: ``model`` is not a Seq2Seq.
        ValueError: a parameter name either model lacks.
    """
    if not isinstance(model, Seq2Seq):
        raise TypeError(f"model: expected a fastrnn Seq2Seq, got {type(model).__name__}")
    tm = TorchSeq2Seq(model.config)
    params = model.named_parameters()
    mine = dict(tm.named_parameters())
    if set(params) != set(mine):
        raise ValueError(
            f"model: its parameters {sorted(set(params) - set(mine))} have no torch counterpart, "
            f"the torch model's {sorted(set(mine) - set(params))} none in the model"
        )
    with torch.no_grad():
        for name, p in mine.items():
            p.copy_(torch.from_numpy(np.ascontiguousarray(params[name])))
    return tm
