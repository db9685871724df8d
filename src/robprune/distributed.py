"""Joining a torch.distributed process group started by ``torchrun`` (gloo on CPUs, NCCL on GPUs).

robprune has no launcher of its own: ``torchrun --nproc_per_node N -m robprune train|eval ...``
starts the ranks, and :func:`setup` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT) to join the group. Outside torchrun it does nothing, so every command runs
unchanged as one process.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

BACKENDS = ("auto", "gloo", "nccl")
JOIN_GRACE_S = 3.0  # how long past its own timeout a join may take before the watchdog ends the process


@dataclass(frozen=True)
class Group:
    rank: int  # this process's rank, 0..world-1
    world: int  # number of processes
    device: torch.device  # the device this rank computes on

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device, backend: str = "auto", timeout_s: float = 300.0) -> Group:
    """Join torchrun's process group (once); a single-process Group when not under torchrun.

    ``backend`` auto picks NCCL for CUDA devices and gloo otherwise; NCCL on a
    CPU is refused. A GPU rank uses ``cuda:LOCAL_RANK``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown distributed backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not launched_by_torchrun() or int(os.environ.get("WORLD_SIZE", "1")) == 1 and not dist.is_initialized():
        if backend == "nccl" and device.type != "cuda":
            raise ValueError("the NCCL backend needs CUDA GPUs; use gloo (or auto) on CPUs")
        return Group(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    chosen = ("nccl" if device.type == "cuda" else "gloo") if backend == "auto" else backend
    if chosen == "nccl" and device.type != "cuda":
        raise ValueError("the NCCL backend needs CUDA GPUs; use gloo (or auto) on CPUs")
    if not dist.is_initialized():
        try:
            with _join_watchdog(chosen, timeout_s):
                _join(chosen, timeout_s)
        except Exception as err:  # rendezvous failures surface as several exception types
            raise RuntimeError(f"cannot join the process group ({chosen}, rank {os.environ.get('RANK')} of "
                               f"{os.environ.get('WORLD_SIZE')}) within {timeout_s:g} s: "
                               f"{' '.join(str(err).split())[:300]}") from None
    return Group(dist.get_rank(), dist.get_world_size(), device)


def _join(chosen: str, timeout_s: float) -> None:
    timeout = datetime.timedelta(seconds=timeout_s)
    store = _attempt_store(timeout)
    if store is None:
        dist.init_process_group(chosen, timeout=timeout)
    else:
        dist.init_process_group(chosen, store=store, rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]), timeout=timeout)


@contextmanager
def _join_watchdog(chosen: str, timeout_s: float) -> Iterator[None]:
    """End the process (one line, exit 2) if joining outlasts its timeout.

    torch's TCPStore client waits without a timeout for the answer to its
    first message: when another program holds MASTER_PORT and accepts the
    connection without speaking the store's protocol, a rank blocks in C++
    forever. No Python exception can reach it there, so a watchdog thread
    ends the process once the join timeout (plus a grace) has passed.
    """
    joined = threading.Event()

    def watch() -> None:
        if not joined.wait(timeout_s + JOIN_GRACE_S):
            where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
            sys.stderr.write(f"robprune: error (rank {os.environ.get('RANK')}): cannot join the process group "
                             f"({chosen}, rank {os.environ.get('RANK')} of {os.environ.get('WORLD_SIZE')}) within "
                             f"{timeout_s:g} s: no answer from {where} (is another program holding that port?)\n")
            sys.stderr.flush()
            os._exit(2)

    threading.Thread(target=watch, name="robprune-join-watchdog", daemon=True).start()
    try:
        yield
    finally:
        joined.set()


def _attempt_store(timeout: datetime.timedelta):
    """torchrun's store under a prefix of this restart attempt, or None outside an elastic agent.

    After an elastic restart the agent's store still holds the previous
    attempt's addresses; a rank that read its peer's old address would fail to
    connect. A prefix per attempt (TORCHELASTIC_RESTART_COUNT) keeps the rounds apart.
    """
    if "TORCHELASTIC_RESTART_COUNT" not in os.environ or "MASTER_ADDR" not in os.environ:
        return None
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    rank = int(os.environ["RANK"])
    base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), int(os.environ["WORLD_SIZE"]),
                         is_master=not agent_store and rank == 0, timeout=timeout, multi_tenant=not agent_store)
    return dist.PrefixStore(f"robprune/attempt_{os.environ['TORCHELASTIC_RESTART_COUNT']}", base)


def rank_from_env() -> int:
    """This process's rank under torchrun (0 otherwise), known before the group is joined; 0 for an unreadable
    RANK, which ``check_env`` refuses (so that reporting that error never fails itself)."""
    try:
        return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0
    except ValueError:
        return 0


def check_env() -> None:
    """Refuse a torchrun environment that cannot be one: RANK and WORLD_SIZE must be integers, 0 <= RANK <
    WORLD_SIZE."""
    if not launched_by_torchrun():
        return
    rank, world = os.environ["RANK"], os.environ["WORLD_SIZE"]
    try:
        ok = 0 <= int(rank) < int(world)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"RANK={rank!r} and WORLD_SIZE={world!r} are not a torchrun process's rank and size; "
                         "unset them to run one process, or start the command with torchrun")


def teardown(completed: bool = False) -> None:
    """Leave the process group. After a command that ``completed`` on every rank, the ranks first meet at a
    barrier, so no rank closes its connections while a peer is still inside a collective (a gloo rank whose peer
    had already exited was seen to abort at exit in CI: "terminate called without an active exception"). After
    an error no barrier: a peer may be dead."""
    if dist.is_available() and dist.is_initialized():
        if completed and dist.get_world_size() > 1:
            try:
                dist.barrier()
            except Exception:  # a peer failed after all; leaving is all that is left to do
                pass
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over ranks (identity outside a group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_and(mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Element-wise AND of a bool tensor over ranks (identity outside a group); the result on mask's device."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return mask
    t = mask.to(device=device, dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t.bool().to(mask.device)


def my_batches(n: int, batch_size: int) -> list[int]:
    """Start indices of the batches this rank evaluates: batch b goes to rank b % world.

    The batch boundaries (and so each batch's content and seed) are those of
    a one-process run, which makes sharded counts identical to it.
    """
    starts = list(range(0, n, batch_size))
    if not (dist.is_available() and dist.is_initialized()):
        return starts
    rank, world = dist.get_rank(), dist.get_world_size()
    return [s for i, s in enumerate(starts) if i % world == rank]


def world_size() -> int:
    """The number of processes in the group (1 outside one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, or outside a process group: the process that writes files and prints."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
