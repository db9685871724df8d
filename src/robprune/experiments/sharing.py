"""Who holds a unit: the claims of processes sharing a unit store, their heartbeat, whether a claimant is alive,
and deferring a unit another process is computing."""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


STALE_S = 600.0  # a claim not refreshed for this long (the holder refreshes it every minute) is a dead process's


class UnitBusy(Exception):
    """Raised inside ``deferring()`` for a unit another live process is computing."""

    def __init__(self, name: str, owner: dict) -> None:
        super().__init__(f"unit {name} is being computed by pid {owner.get('pid')} on {owner.get('host')}")
        self.name, self.owner = name, owner


_DEFER = contextvars.ContextVar("robprune_defer_busy_units", default=False)


def deferring_now() -> bool:
    """Whether this code runs inside ``deferring()``."""
    return _DEFER.get()


@contextlib.contextmanager
def deferring():
    """Inside: a unit claimed by another live process raises ``UnitBusy`` instead of being waited for."""
    token = _DEFER.set(True)
    try:
        yield
    finally:
        _DEFER.reset(token)


def defer_busy(items, step: Callable[[Any], Any]) -> list:
    """``[step(item) for item in items]``, in the items' order, but an item whose units another process is
    computing is put off and looked at again after each pass, so processes sharing a store divide independent
    work instead of queueing. Only when every remaining item is busy elsewhere does this process wait (for the
    first of them)."""
    items = list(items)
    results: dict[int, Any] = {}
    pending = list(range(len(items)))
    while pending:
        later = []
        for i in pending:
            try:
                with deferring():
                    results[i] = step(items[i])
            except UnitBusy:
                later.append(i)
        if later and len(later) == len(pending):
            i = later.pop(0)
            results[i] = step(items[i])
        pending = later
    return [results[i] for i in range(len(items))]


class _Heartbeat:
    """Refreshes the claims this process holds, so other hosts can tell a live claim from a dead one."""

    def __init__(self) -> None:
        self.held: set[Path] = set()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, path: Path) -> None:
        with self.lock:
            self.held.add(path)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="robprune-claims", daemon=True)
                self.thread.start()

    def discard(self, path: Path) -> None:
        with self.lock:
            self.held.discard(path)

    def _run(self) -> None:
        while True:
            time.sleep(60.0)
            with self.lock:
                held = list(self.held)
            for path in held:
                with contextlib.suppress(OSError):
                    os.utime(path)


HEARTBEAT = _Heartbeat()


def me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def is_mine(owner: dict) -> bool:
    return {k: owner.get(k) for k in ("host", "pid")} == me()


def started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc, with the boot's id), or None where
    /proc does not say: a pid reused by another process after a restart then does not pass for the claimant."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        return f"{boot}:{stat[stat.rindex(')') + 2:].split()[19]}"
    except (OSError, ValueError, IndexError):
        return None


def alive(owner: dict, claim: Path) -> bool:
    """Whether the process named in a claim may still be computing: its claim was refreshed in the last
    ``STALE_S`` seconds and, on this host, a process with its pid exists and started when it did."""
    try:
        if time.time() - claim.stat().st_mtime >= STALE_S:
            return False
    except OSError:
        return False
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        try:
            os.kill(owner["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return True
        now = started(owner["pid"])
        if now is None:  # no /proc here: a live pid is all there is to go on
            return True
        return owner.get("started") == now  # a claim without a start time cannot show its process is this one
    return isinstance(owner.get("host"), str) and isinstance(owner.get("pid"), int)  # a claim names its holder
