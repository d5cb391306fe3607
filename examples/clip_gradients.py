"""Exploding gradients, measured and caught by clipping the global gradient norm.

A vanilla ReLU RNN whose recurrent weights have a spectral radius above 1 multiplies the gradient
by roughly that radius at every step back in time; over 200 steps it explodes. Clipping rescales
all gradients together so that their global norm is at most `max_norm` (the direction is kept).
Run: python examples/clip_gradients.py
"""

from __future__ import annotations

import numpy as np

import fastrnn


def clip_by_global_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale the gradients in place so that their global L2 norm is at most max_norm; return the
    norm before clipping."""
    norm = float(np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values())))
    if np.isfinite(norm) and norm > max_norm:
        for g in grads.values():
            g *= max_norm / norm
    return norm


def main() -> None:
    H, T = 32, 200
    rnn = fastrnn.RNN(8, H, nonlinearity="relu", dtype=np.float64, seed=0)
    sd = rnn.state_dict()
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((H, H)))
    sd["weight_hh_l0"] = 1.15 * q  # orthogonal x 1.15: every direction grows by 1.15 per step
    rnn.load_state_dict(sd)

    x = np.abs(rng.standard_normal((T, 4, 8)))
    y, _ = rnn(x)
    dy = np.zeros_like(y)
    dy[-1] = 1.0  # the loss looks at the last step only
    dx, _ = rnn.backward(dy)
    per_step = np.linalg.norm(dx.reshape(T, -1), axis=1)
    print(f"|dL/dx_t| at t = T-1: {per_step[-1]:.3g}, at t = 0: {per_step[0]:.3g}")

    norm = clip_by_global_norm(rnn.grads, max_norm=1.0)
    clipped = clip_by_global_norm(rnn.grads, max_norm=np.inf)
    print(f"global gradient norm before clipping: {norm:.3g}, after: {clipped:.3g}")


if __name__ == "__main__":
    main()
