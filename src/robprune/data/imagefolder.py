"""ImageFolder trees (a folder, .tar or .tar.gz of PATH/{train,test}/<class>/*.jpg|png) decoded once into
arrays, with a cache keyed by the source's identity, bounded reads and refusals of unsafe archive members."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .image_data import ImageData, default_cache_dir


log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


MAX_MEMBER_BYTES = 64 * 1024 * 1024  # one image file inside an archive or folder


MAX_IMAGE_PIXELS = 4096 * 4096  # one decoded image


MAX_TOTAL_PIXELS = 2 * 1024 ** 3  # all decoded images together (x 3 bytes: 6 GiB of RGB)


def _decode(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size  # from the header: nothing decoded yet
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(f"its header claims {width}x{height} pixels (limit {MAX_IMAGE_PIXELS})")
            return np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError,
            EOFError, MemoryError) as err:
        raise ValueError(f"cannot decode image {name}: {err}") from None


def _safe_member_path(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"refusing archive {archive}: member {name!r} points outside the tree")
    return PurePosixPath(*[p for p in path.parts if p != "."])


def _iter_folder_files(root: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    resolved = root.resolve()
    try:
        paths = sorted(root.rglob("*"))
    except (OSError, RuntimeError) as err:  # a symlink loop raises OSError (ELOOP) or RuntimeError
        raise ValueError(f"cannot list ImageFolder {root}: {err}") from None
    for path in paths:
        try:
            if path.is_symlink() and not path.resolve(strict=True).is_relative_to(resolved):
                raise ValueError(f"refusing {path}: a symlink out of the tree")
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                size = path.stat().st_size
                if size > MAX_MEMBER_BYTES:
                    raise ValueError(f"image file {path} is {size} bytes (limit {MAX_MEMBER_BYTES})")
                yield PurePosixPath(path.relative_to(root).as_posix()), path.read_bytes()
        except (OSError, RuntimeError) as err:  # ELOOP, permissions, a file vanishing mid-read
            raise ValueError(f"cannot read {path}: {err}") from None


def _iter_tar_files(archive: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Image members of a tar (or .tar.gz) archive, all or nothing.

    tarfile stops silently at a damaged member header or at a truncation on a
    header boundary and reports a shorter archive; so after the last member
    everything up to the end must be the zero blocks of a proper end-of-archive
    marker, or the archive is refused whole.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                rel = _safe_member_path(member.name, archive)
                if member.issym() or member.islnk():
                    raise ValueError(f"refusing archive {archive}: member {member.name!r} is a link")
                if member.isfile() and rel.suffix.lower() in IMAGE_SUFFIXES:
                    if member.size > MAX_MEMBER_BYTES:
                        raise ValueError(f"refusing archive {archive}: member {member.name!r} claims "
                                         f"{member.size} bytes (limit {MAX_MEMBER_BYTES})")
                    data = tar.extractfile(member).read()
                    if len(data) != member.size:
                        raise ValueError(f"archive {archive} is truncated inside member {member.name!r}")
                    yield rel, data
            _check_end_of_archive(tar, archive)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise ValueError(f"cannot read archive {archive}: {err}") from None


def _check_end_of_archive(tar: tarfile.TarFile, archive: Path) -> None:
    fileobj = tar.fileobj
    fileobj.seek(tar.offset)
    rest = 0
    while True:
        chunk = fileobj.read(1 << 20)
        if not chunk:
            break
        if chunk.count(0) != len(chunk):
            raise ValueError(f"archive {archive} is damaged: unreadable data after member "
                             f"{len(tar.getmembers())} (a corrupt header); refusing a partial data set")
        rest += len(chunk)
    if rest < tarfile.BLOCKSIZE:
        raise ValueError(f"archive {archive} is truncated: it ends without the end-of-archive marker")


def _split_class(rel: PurePosixPath) -> tuple[str, str, str] | None:
    """(tree root, 'train'|'test', class) for root/split/class/file; None for files outside both splits.

    The tree may start anywhere inside an archive (``cifar10/train/cat/1.jpg``),
    but an image deeper than split/class/file is an error, not a silent skip.
    """
    parts = rel.parts
    for i, part in enumerate(parts[:-1]):
        if part in ("train", "test"):
            if len(parts) != i + 3:
                raise ValueError(f"image {rel} is not at <root>/{part}/<class>/<file>; an ImageFolder tree has "
                                 "exactly one class folder below each split")
            return "/".join(parts[:i]), part, parts[i + 1]
    return None


def _source_key(path: Path) -> str:
    """Cache key of an archive: its content (SHA-256 of every byte), so a changed file never reuses a cache."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:24]


def load_imagefolder(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                     progress=None) -> ImageData:
    """An ImageFolder tree with train/ and test/ splits, from a folder or a tar archive."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ImageFolder {path} does not exist")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_file = cache / f"imagefolder-{_source_key(path)}.npz" if path.is_file() else None
    arrays = _read_cache(cache_file) if cache_file is not None and cache_file.is_file() else None
    if arrays is None:
        if progress is not None and cache_file is not None:
            progress({"kind": "note", "text": f"decoding {path} once (cached afterwards in {cache})"})
        arrays = _decode_imagefolder(path)
        if cache_file is not None:
            _write_cache(cache_file, arrays)
    classes = tuple(str(c) for c in arrays["classes"])
    return ImageData(f"imagefolder:{path.name}", torch.from_numpy(arrays["x_train"]),
                     torch.from_numpy(arrays["y_train"]), torch.from_numpy(arrays["x_test"]),
                     torch.from_numpy(arrays["y_test"]), classes, augment="crop-flip", crop_padding=4)


CACHE_KEYS = ("classes", "x_train", "y_train", "x_test", "y_test")


def _read_cache(cache_file: Path) -> dict[str, np.ndarray] | None:
    """The decoded arrays, or None (and the file removed) when the cache is corrupt or inconsistent."""
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        ok = set(arrays) == set(CACHE_KEYS) and arrays["x_train"].dtype == np.uint8 \
            and len(arrays["x_train"]) == len(arrays["y_train"]) and len(arrays["x_test"]) == len(arrays["y_test"])
        if ok:
            return arrays
        reason = "unexpected contents"
    except Exception as err:  # a damaged .npz fails in many ways (zip, header, dtype)
        reason = f"{type(err).__name__}: {err}"
    log.warning("decoded-data cache %s is damaged (%s); decoding again", cache_file, " ".join(reason.split())[:200])
    cache_file.unlink(missing_ok=True)
    return None


def _write_cache(cache_file: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically; an unwritable cache folder means no cache (a warning), not a failure."""
    from ..io import write_bytes_atomic

    try:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_bytes_atomic(cache_file, buf.getvalue())
    except OSError as err:
        log.warning("cannot write the decoded-data cache %s (%s); continuing without a cache", cache_file, err)


def _decode_imagefolder(path: Path) -> dict[str, np.ndarray]:
    files = _iter_folder_files(path) if path.is_dir() else _iter_tar_files(path)
    found: dict[str, list[tuple[str, str, np.ndarray]]] = {"train": [], "test": []}
    shape = None
    roots: set[str] = set()
    pixels = 0
    for rel, data in files:
        split_class = _split_class(rel)
        if split_class is None:
            continue
        root, *split_class = split_class
        roots.add(root)
        if len(roots) > 1:
            raise ValueError(f"ImageFolder {path} holds more than one tree ({', '.join(sorted(roots))}); "
                             "expected one <root>/{train,test}/<class>/<file> layout")
        image = _decode(data, str(rel))
        pixels += image.shape[1] * image.shape[2]
        if pixels > MAX_TOTAL_PIXELS:
            raise ValueError(f"ImageFolder {path} decodes to more than {MAX_TOTAL_PIXELS} pixels; too large to "
                             "hold in memory")
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise ValueError(f"image {rel} is {image.shape[2]}x{image.shape[1]}, "
                             f"others are {shape[2]}x{shape[1]}; all images must have one size")
        found[split_class[0]].append((split_class[1], str(rel), image))
    for split in ("train", "test"):
        if not found[split]:
            raise ValueError(f"ImageFolder {path} has no images under {split}/<class>/")
    classes = sorted({c for c, _, _ in found["train"]})
    unknown = sorted({c for c, _, _ in found["test"]} - set(classes))
    if unknown:
        raise ValueError(f"ImageFolder {path}: test classes {unknown} do not occur in train")
    index = {c: i for i, c in enumerate(classes)}
    arrays: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for split, items in found.items():
        items.sort(key=lambda t: (index[t[0]], t[1]))
        arrays[f"x_{split}"] = np.stack([img for _, _, img in items])
        arrays[f"y_{split}"] = np.array([index[c] for c, _, _ in items], dtype=np.int64)
    return arrays
