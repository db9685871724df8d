"""The cached-unit store: one folder per unit of work, keyed by its config, completed atomically.

A unit (a trained model, an evaluation) lives in ``root/units/<name>-<hash of its key>/`` with the
config that made it (``unit.json``) and a completion marker (``.done``) written last. A rerun
loads a completed unit instead of recomputing it; a unit whose files are missing, truncated or
fail to load is recomputed, with a log line saying why, never a crash. Experiments (the demo,
the grid, reproduce) use nothing else to cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from ..io import write_json, write_text_atomic
from ..progress import Progress, emit

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


class UnitStore:
    """Units under ``root/units``; ``store.unit(name, key)`` is the one way experiments cache work."""

    def __init__(self, root: str | Path, progress: Progress | None = None) -> None:
        self.root = Path(root)
        self.progress = progress

    def unit(self, name: str, key) -> Unit:
        return Unit(unit_dir(self.root, name, key), name, key, self.progress)

    def compute(self, name: str, key, loader: Callable[[Path], Any], make: Callable[[Path], Any]) -> Any:
        """The cached value of unit ``name`` or, when absent or damaged, ``make(folder)`` then completed.

        Under torchrun every rank runs ``make`` (training and evaluation are collective) and only rank 0
        writes files (``make`` checks ``distributed.is_main()``), so the units run one after another,
        each using all ranks.
        """
        unit = self.unit(name, key)
        value = unit.cached(loader)
        if value is not None:
            return value
        value = make(unit.start())
        unit.complete()
        return value
