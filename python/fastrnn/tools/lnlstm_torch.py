"""The layer-normalised LSTM in TorchScript: the peer of fastrnn's ``lnlstm`` in the bench.

:class:`LayerNormLSTMCell` is the ``LayerNormLSTMCell`` of PyTorch's RNN benchmark suite
(pytorch/benchmarks/fastrnns/custom_lstms.py), op for op: ``torch.mm`` of the input and of the
hidden state, ``nn.LayerNorm`` (elementwise affine, eps 1e-5) of each 4H row, their sum, the gates
from ``chunk(4, 1)`` in PyTorch's order i, f, g, o, and ``nn.LayerNorm`` of the new cell state
inside the output's tanh. One difference, for haste's LayerNormLSTM that fastrnn computes: the
state carried to the next step is the cell state before its layer norm (custom_lstms.py carries
the normalised one); the work per step is the same. :class:`LayerNormLSTM` runs the cell over
the steps (custom_lstms.py's ``LSTMLayer``) and :func:`scripted` compiles it with
``torch.jit.script``, with fastrnn's parameters copied in: ``weight_ih``, ``weight_hh``, and

* ``layernorm_i.weight = g_ih``, ``layernorm_i.bias = b_ih`` (4H),
* ``layernorm_h.weight = g_hh``, ``layernorm_h.bias = b_hh`` (4H),
* ``layernorm_c.weight = g_c``, ``layernorm_c.bias = b_c`` (H),

so that ``v = g_ih*LN(x W_ih^T) + b_ih + g_hh*LN(h W_hh^T) + b_hh`` is fastrnn's pre-activation.

torch is optional: this module imports it, so import the module only where torch is wanted.
"""

from __future__ import annotations

import warnings
from typing import Any

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "fastrnn.tools.lnlstm_torch needs PyTorch, which is not installed: "
        'pip install "fastrnn[torch]" (or any torch with CPU support)'
    ) from e

__all__ = ["LayerNormLSTM", "LayerNormLSTMCell", "scripted"]

Tensor = torch.Tensor


class LayerNormLSTMCell(torch.nn.Module):
    """One step of the layer-normalised LSTM (custom_lstms.py's cell, see the module)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.weight_ih = torch.nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = torch.nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.layernorm_i = torch.nn.LayerNorm(4 * hidden_size)
        self.layernorm_h = torch.nn.LayerNorm(4 * hidden_size)
        self.layernorm_c = torch.nn.LayerNorm(hidden_size)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        hx, cx = state
        igates = self.layernorm_i(torch.mm(x, self.weight_ih.t()))
        hgates = self.layernorm_h(torch.mm(hx, self.weight_hh.t()))
        gates = igates + hgates
        ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
        ingate = torch.sigmoid(ingate)
        forgetgate = torch.sigmoid(forgetgate)
        cellgate = torch.tanh(cellgate)
        outgate = torch.sigmoid(outgate)
        cy = (forgetgate * cx) + (ingate * cellgate)
        hy = outgate * torch.tanh(self.layernorm_c(cy))
        return hy, cy


class LayerNormLSTM(torch.nn.Module):
    """The cell over the steps of a time-major ``(T, B, I)`` input from the state ``(h0, c0)``
    (each ``(B, H)``): returns ``y (T, B, H)`` and the last ``(h, c)``."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = LayerNormLSTMCell(input_size, hidden_size)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, c = state
        outputs: list[Tensor] = []
        for xt in x.unbind(0):
            h, c = self.cell(xt, (h, c))
            outputs.append(h)
        return torch.stack(outputs), (h, c)


def scripted(p: dict[str, Any]) -> Any:
    """:class:`LayerNormLSTM` compiled by ``torch.jit.script``, with the parameters ``p`` (NumPy
    float32 arrays by fastrnn's names: ``w_ih (4H, I)``, ``w_hh (4H, H)``, ``b_ih``, ``b_hh``,
    ``g_ih``, ``g_hh`` (4H), ``g_c``, ``b_c`` (H)) copied in as the module describes. PyTorch
    deprecates TorchScript (a DeprecationWarning, silenced here): it is the peer issue 24 names,
    the form of PyTorch's benchmark suite."""
    H4, I = p["w_ih"].shape
    m = LayerNormLSTM(I, H4 // 4)
    names = {"weight_ih": "w_ih", "weight_hh": "w_hh",
             "layernorm_i.weight": "g_ih", "layernorm_i.bias": "b_ih",
             "layernorm_h.weight": "g_hh", "layernorm_h.bias": "b_hh",
             "layernorm_c.weight": "g_c", "layernorm_c.bias": "b_c"}  # fmt: skip
    state = {f"cell.{k}": torch.from_numpy(p[v].copy()) for k, v in names.items()}
    m.load_state_dict(state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(m)
