"""The cached-unit store: one folder per unit of work, keyed by its config, completed atomically.

A unit (a trained model, an evaluation) lives in ``root/units/<name>-<hash of its key>/`` with the
config that made it (``unit.json``) and a completion marker (``.done``) written last. A rerun
loads a completed unit instead of recomputing it; a unit whose files are missing, truncated or
fail to load is recomputed, with a log line saying why, never a crash. Experiments (the demo,
the grid, reproduce) use nothing else to cache.

Several processes may share one store (the same command started twice on a 2-core machine, or
jobs of a cluster array on a shared filesystem): a process computing a unit holds a claim on it
(``.claim``: host, pid, refreshed every minute), and another process that needs the unit waits
for it rather than computing it twice, or, inside ``deferring()``, is told so (``UnitBusy``) and
can do other work first. A claim whose process is gone (not refreshed for ``STALE_S``, or on the
same host: no process with its pid and start time) is taken over, so a killed process never
blocks a unit. Under torchrun the ranks compute every unit together and take no claims.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from ..io import write_json, write_text_atomic
from ..progress import Progress, emit
from .sharing import (HEARTBEAT, STALE_S, UnitBusy, alive, defer_busy, deferring, deferring_now, is_mine, me,  # noqa: F401
                      started)

log = logging.getLogger(__name__)


def config_key(config) -> dict:
    """The fields of a dataclass config that differ from their defaults.

    Cache keys use this, so adding a new field with a default later does not
    invalidate units that were computed before it existed.
    """
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        if value != default:
            out[f.name] = asdict(value) if is_dataclass(value) else value
    return out


def config_hash(obj) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def unit_dir(out_dir: Path, name: str, key) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Path(out_dir) / "units" / f"{safe}-{config_hash(key)}"


CLAIM_WRITE_S = 5.0  # an unreadable claim younger than this may be a claim being written; older, it is garbage
POLL_S = 10.0  # the longest a process waiting for another's unit sleeps before looking again


class Unit:
    """One unit of cached work: its folder, its key, and whether it completed."""

    MARKER = ".done"

    def __init__(self, path: Path, name: str, key, progress: Progress | None = None) -> None:
        self.path, self.name, self.key, self.progress = path, name, key, progress

    def cached(self, loader: Callable[[Path], Any]) -> Any | None:
        """``loader(path)`` of a completed unit, or None when it must be computed (absent or damaged)."""
        if not (self.path / self.MARKER).is_file():
            return None
        try:
            value = loader(self.path)
        except Exception as err:  # a damaged unit may fail in any way; it is recomputed, never fatal
            log.warning("unit %s in %s is damaged (%s: %s); recomputing it", self.name, self.path,
                        type(err).__name__, " ".join(str(err).split())[:200])
            (self.path / self.MARKER).unlink(missing_ok=True)
            return None
        emit(self.progress, kind="unit", name=self.name, status="cached")
        return value

    def start(self) -> Path:
        emit(self.progress, kind="unit", name=self.name, status="start")
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def complete(self) -> None:
        """Mark the unit done (rank 0 writes; every rank of a process group waits for it)."""
        from ..distributed import barrier, is_main

        if is_main():
            write_json(self.path / "unit.json", {"name": self.name, "key": self.key})
            write_text_atomic(self.path / self.MARKER, "")
        barrier()
        emit(self.progress, kind="unit", name=self.name, status="done")

    def clear(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    CLAIM = ".claim"

    def claim(self) -> dict | None:
        """Claim the unit for this process: None when it is ours now, else the live owner's claim."""
        from ..distributed import world_size

        if world_size() > 1:
            return None
        self.path.mkdir(parents=True, exist_ok=True)
        claim = self.path / self.CLAIM
        mine = me() | {"since": time.strftime("%Y-%m-%d %H:%M:%S"), "started": started(os.getpid())}
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(claim.read_text())
            except (OSError, ValueError, RecursionError):  # being written this instant, or damaged
                owner = {}
                if claim.is_file() and time.time() - claim.stat().st_mtime < CLAIM_WRITE_S:
                    return {"host": "?", "pid": "?"}
            if not isinstance(owner, dict):
                owner = {}  # a claim that cannot be read is no claim: its unit is taken over
            if is_mine(owner):
                return None
            if alive(owner, claim):
                return owner
            log.warning("unit %s: taking over the claim of pid %s on %s, which is gone", self.name,
                        owner.get("pid"), owner.get("host"))
            write_json(claim, mine)
        else:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(mine))
        HEARTBEAT.add(claim)
        return None

    def release(self) -> None:
        """Give up this process's claim (after completing, or on an error: another process may then compute it)."""
        claim = self.path / self.CLAIM
        HEARTBEAT.discard(claim)
        try:
            owner = json.loads(claim.read_text())
        except (OSError, ValueError):
            return
        if is_mine(owner):
            claim.unlink(missing_ok=True)


class UnitStore:
    """Units under ``root/units``; ``store.unit(name, key)`` is the one way experiments cache work."""

    def __init__(self, root: str | Path, progress: Progress | None = None) -> None:
        self.root = Path(root)
        self.progress = progress

    def unit(self, name: str, key) -> Unit:
        return Unit(unit_dir(self.root, name, key), name, key, self.progress)

    def compute(self, name: str, key, loader: Callable[[Path], Any], make: Callable[[Path], Any]) -> Any:
        """The cached value of unit ``name`` or, when absent or damaged, ``make(folder)`` then completed; either way
        the value is ``loader(folder)`` (what ``make`` returns is not used).

        Under torchrun every rank runs ``make`` (training and evaluation are collective) and only rank 0
        writes files (``make`` checks ``distributed.is_main()``), so the units run one after another,
        each using all ranks.
        """
        unit = self.unit(name, key)
        value = unit.cached(loader)
        if value is not None:
            return value
        waits = 0
        while (owner := unit.claim()) is not None:  # another live process is computing it
            if deferring_now():
                raise UnitBusy(name, owner)
            if not waits:
                emit(self.progress, kind="note", text=f"waiting for unit {name}: pid {owner.get('pid')} on "
                                                      f"{owner.get('host')} is computing it")
            time.sleep(min(POLL_S, 0.25 * 2 ** min(waits, 8)))  # short units noticed at once, long ones polled cheaply
            waits += 1
            value = unit.cached(loader)
            if value is not None:
                return value
        try:
            value = unit.cached(loader)  # completed by another process just before the claim was ours
            if value is not None:
                return value
            make(unit.start())
            unit.complete()
            # handed on as any later process will load it, never as ``make`` left it in memory: a model trained
            # here keeps the layout training gave its weights (channels_last), other kernels run on it, and every
            # unit built on it would then depend on whether this one was computed or loaded in the same process
            return loader(unit.path)
        finally:
            unit.release()
