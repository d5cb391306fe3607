"""Data-parallel training of a fastrnn.torch model with PyTorch's DistributedDataParallel (CPU).

The model is ordinary PyTorch (an LSTM and a Linear head learning the adding problem); only the
recurrent layer comes from fastrnn.torch. DDP (gloo backend, CPU) runs one process per replica,
each on its share of every batch, and averages the gradients across processes after backward:
the update is the one a single process would make on the whole batch.

One machine, two processes (loopback only)::

    python examples/ddp_train.py                       # starts the 2 processes itself
    torchrun --standalone --nproc_per_node=2 examples/ddp_train.py

Several machines, for example 2 machines with 4 processes each (run on every machine, with
--node_rank 0 on the one whose address is given)::

    torchrun --nnodes=2 --nproc_per_node=4 --node_rank=0 \\
        --master_addr=10.0.0.1 --master_port=29500 examples/ddp_train.py

``--check`` also verifies, at every step, that the averaged gradients equal those of one process
on the whole batch, and those of the same model built from torch.nn modules under DDP.
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import fastrnn
import fastrnn.torch as frt
from fastrnn.tasks import adding_problem


class Regressor(torch.nn.Module):
    """Many-to-one: the last hidden state of an LSTM through a Linear layer."""

    def __init__(self, rnn_module: Any, hidden: int) -> None:
        super().__init__()
        self.rnn = rnn_module(2, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return self.head(y[:, -1]).squeeze(1)  # type: ignore[no-any-return]


def batches(steps: int, batch: int, T: int, dtype: torch.dtype) -> list[tuple[Any, Any]]:
    """The same global batches in every process (each takes its own rows)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(steps):
        x, y = adding_problem(batch, T, rng, dtype=np.float64)  # x (T, B, 2), y (B, 1)
        xb = torch.from_numpy(x).transpose(0, 1).contiguous()  # batch-first (B, T, 2)
        out.append((xb.to(dtype), torch.from_numpy(y[:, 0]).to(dtype)))
    return out


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def train(rank: int, world: int, args: argparse.Namespace) -> None:
    dtype = torch.float64 if args.check else torch.float32
    threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    torch.set_num_threads(threads)
    fastrnn.set_num_threads(threads)

    torch.manual_seed(0)  # the same initial weights in every process (DDP also broadcasts them)
    model = DDP(Regressor(frt.LSTM, args.hidden).to(dtype))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    if args.check:
        torch.manual_seed(0)
        peer = DDP(Regressor(torch.nn.LSTM, args.hidden).to(dtype))  # torch.nn, same weights
        peer_opt = torch.optim.Adam(peer.parameters(), lr=args.lr)
        torch.manual_seed(0)
        single = Regressor(frt.LSTM, args.hidden).to(dtype)  # one process, whole batch
        single_opt = torch.optim.Adam(single.parameters(), lr=args.lr)
    worst_single = worst_peer = 0.0

    for step, (x, y) in enumerate(batches(args.steps, args.batch, args.T, dtype)):
        mine = slice(rank, None, world)  # this process's rows of the global batch
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[mine]), y[mine])
        loss.backward()  # DDP averages the gradients across the processes here
        if args.check:
            grads = [p.grad for p in model.parameters()]
            peer_opt.zero_grad()
            torch.nn.functional.mse_loss(peer(x[mine]), y[mine]).backward()
            worst_peer = max(worst_peer, max_diff(grads, [p.grad for p in peer.parameters()]))
            single_opt.zero_grad()
            torch.nn.functional.mse_loss(single(x), y).backward()
            worst_single = max(worst_single,
                               max_diff(grads, [p.grad for p in single.parameters()]))  # fmt: skip
            peer_opt.step()
            single_opt.step()
        opt.step()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        if rank == 0 and (step % max(1, args.steps // 10) == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {float(mean_loss) / world:.4f}", flush=True)
    if args.check and rank == 0:
        print(f"max |grad - grad of one process on the whole batch|: {worst_single:.2e}")
        print(f"max |grad - grad of torch.nn.LSTM under DDP|: {worst_peer:.2e}")
    if rank == 0:
        print(f"trained with {world} processes, {threads} thread(s) each")


def _run(rank: int, world: int, args: argparse.Namespace) -> None:
    try:
        train(rank, world, args)
        # leave together: a process tearing its gloo connections down while its peer is still
        # finishing can make the peer abort ("terminate called without an active exception";
        # seen in 2 of 6 torchrun runs without this barrier)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawned(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    os.environ["LOCAL_WORLD_SIZE"] = str(world)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    _run(rank, world, args)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64, help="global batch (split over processes)")
    ap.add_argument("--T", type=int, default=30, help="sequence length")
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--nproc", type=int, default=2, help="processes when not under torchrun")
    ap.add_argument(
        "--check",
        action="store_true",
        help="float64, and compare the gradients with one process and torch.nn",
    )
    args = ap.parse_args(argv)
    if "RANK" in os.environ:  # started by torchrun: it set RANK, WORLD_SIZE, MASTER_ADDR, ...
        dist.init_process_group("gloo")
        _run(dist.get_rank(), dist.get_world_size(), args)
        return
    with socket.socket() as s:  # a free loopback port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_spawned, args=(args.nproc, port, args), nprocs=args.nproc)


if __name__ == "__main__":
    main()
