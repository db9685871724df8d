"""Atomic file writes: a crash leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import json
import glob
import os
import tempfile
from pathlib import Path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file beside ``path``, fsync it, then rename over ``path``."""
    path = Path(path)
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {path.parent} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(obj):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def prepare_out_dir(path: str | os.PathLike) -> Path:
    """Create an output folder, refusing a path that is an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"output folder {path} exists and is a file")
    path.mkdir(parents=True, exist_ok=True)
    return path


class OutputLock:
    """An OS lock (``flock``) on an output folder: a second process writing there is refused at once.

    With ``shared=True`` (the commands' ``--share``) the lock is a shared one: processes that all asked to share
    the folder run side by side (their cached units are claimed one by one, experiments/store.py), and a process
    that did not ask is refused, as is a sharing one while a non-sharing process holds the folder.

    The kernel releases the lock when the process exits or is killed, so a
    crashed run never leaves a lock that blocks the next one.
    """

    NAME = ".robprune.lock"
    SHARED_NOTE = "processes sharing it (--share)"

    def __init__(self, folder: str | os.PathLike, shared: bool = False) -> None:
        self.folder = Path(folder)
        self.shared = shared
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / self.NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            hint = "; add --share to join them" if holder == self.SHARED_NOTE else ""
            raise ValueError(f"output folder {self.folder} is in use by {holder}{hint}; wait for it to finish or "
                             "choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, (self.SHARED_NOTE if self.shared else f"robprune pid {os.getpid()}").encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
            if not self.shared:  # a sharer leaves the file to the others (a new file would be a second lock)
                (self.folder / self.NAME).unlink(missing_ok=True)


def remove_stale_temporaries(folder: str | os.PathLike, older_than_s: float = 0.0, name: str | None = None) -> int:
    """Delete the hidden ``.NAME.*.tmp`` files an interrupted atomic write left behind; returns how many.

    ``older_than_s`` spares younger ones: in a folder other processes share, a young one is a write in flight.
    With ``name``, only the temporaries of that one file in ``folder`` itself (a command that writes one file
    into a folder it does not own leaves everyone else's alone)."""
    import time

    count = 0
    folder = Path(folder)
    if folder.is_dir():
        found = folder.glob(f".{glob.escape(name)}.*.tmp") if name else folder.rglob(".*.tmp")
        for tmp in found:
            if tmp.is_file() and time.time() - tmp.stat().st_mtime >= older_than_s:
                tmp.unlink(missing_ok=True)
                count += 1
    return count
