"""Datasets held in memory as uint8 tensors, batched and augmented with tensor ops.

Three sources, chosen by a spec string:
    ``digits``             scikit-learn's bundled 8x8 digits (no download), fixed 80/20 split
    ``cifar10:DIR``        the official CIFAR-10 python batches (``cifar-10-batches-py``)
    ``imagefolder:PATH``   ``PATH/{train,test}/<class>/*.jpg|png``, a folder or a .tar/.tar.gz

Class index = position of the class name in sorted order. Decoded ImageFolder
arrays are cached as .npz outside the repository (``~/.cache/robprune``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SCHEMES = ("digits", "cifar10", "imagefolder")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class ImageData:
    """A train/test split as uint8 tensors of shape (N, C, H, W) and int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    augment: str  # default training augmentation: "crop-flip", "crop" or "none"
    crop_padding: int  # pixels of zero padding before the random crop

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training images in [0, 1]."""
        x = self.x_train.float().div(255.0).transpose(0, 1).flatten(1)
        return tuple(x.mean(1).tolist()), tuple(x.std(1).clamp_min(1e-3).tolist())


def default_cache_dir() -> Path:
    return Path(os.environ.get("ROBPRUNE_CACHE", Path.home() / ".cache" / "robprune"))


def load_dataset(spec: str, cache_dir: str | os.PathLike | None = None, progress=None) -> ImageData:
    """Load a dataset from a spec string (see the module docstring).

    ``progress`` receives a ``{"kind": "note"}`` event before a slow first decode.
    """
    scheme, _, arg = spec.partition(":")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown dataset {spec!r}; use digits, cifar10:DIR or imagefolder:PATH")
    if scheme == "digits":
        return load_digits()
    if not arg:
        raise ValueError(f"dataset {scheme!r} needs a path: {scheme}:PATH")
    if scheme == "cifar10":
        return load_cifar10(arg)
    return load_imagefolder(arg, cache_dir, progress)


def load_digits(test_fraction: float = 0.2) -> ImageData:
    """scikit-learn's 1,797 8x8 digits (levels 0..16, scaled to 0..255), split 80/20 with seed 0."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    order = np.random.RandomState(0).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return ImageData("digits", torch.from_numpy(x[train]), torch.from_numpy(y[train]),
                     torch.from_numpy(x[test]), torch.from_numpy(y[test]),
                     tuple(str(c) for c in range(10)), augment="crop", crop_padding=1)


# Bounds on untrusted files, checked before acting on them (README "Reliability" says why these values).
MAX_BATCH_BYTES = 256 * 1024 * 1024  # a CIFAR batch file (the real ones are 31 MB)
MAX_LABELS = 1_000_000  # labels in one batch
MAX_MEMBER_BYTES = 64 * 1024 * 1024  # one image file inside an archive or folder
MAX_IMAGE_PIXELS = 4096 * 4096  # one decoded image
MAX_TOTAL_PIXELS = 2 * 1024 ** 3  # all decoded images together (x 3 bytes: 6 GiB of RGB)
MAX_STRING_BYTES = 1024 * 1024  # a bytes/str object inside a batch pickle (array data excepted)


def _latin1_encode(text, encoding="utf-8"):
    """``_codecs.encode`` as numpy arrays pickled at protocol 2 use it: a latin-1 str, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than a latin-1 string (array data)")
    return text.encode("latin-1")


def _small_bytes(*args):
    """``bytes()`` as an empty numpy array pickled at protocol 2 uses it: no argument, or a short one."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (str, bytes)) and len(args[0]) <= MAX_STRING_BYTES:
        return bytes(args[0], "latin-1") if isinstance(args[0], str) else bytes(args[0])
    raise pickle.UnpicklingError("refusing bytes(...) with arguments from a data file")


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batch dicts only: numpy arrays and plain containers, no other callables.

    The allow-list is exactly what numpy arrays need (protocols 2-5); ``_codecs.encode`` and
    ``bytes`` are replaced by narrow versions that cannot allocate or call anything else.
    """

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}
    NARROW = {("_codecs", "encode"): _latin1_encode, ("__builtin__", "bytes"): _small_bytes,
              ("builtins", "bytes"): _small_bytes}

    def find_class(self, module: str, name: str):
        if (module, name) in self.NARROW:
            return self.NARROW[(module, name)]
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 batch {path} does not exist")
    size = path.stat().st_size
    if size > MAX_BATCH_BYTES:
        raise ValueError(f"{path} is {size} bytes; a CIFAR-10 batch is about 31 MB (limit {MAX_BATCH_BYTES})")
    try:
        with path.open("rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError, IndexError,
            OverflowError, RecursionError, MemoryError, UnicodeError) as err:
        raise ValueError(f"{path} is not a CIFAR-10 batch file: {type(err).__name__}: {err}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 batch file: no dict with data and labels")
    data, labels = batch[b"data"], batch[b"labels"]
    # Check types before converting anything: np.asarray on nested lists can take minutes and silently cast.
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: data must be a uint8 array (pixel values 0..255), got {kind}")
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise ValueError(f"{path}: labels must be a vector of integers, got {labels.dtype} of shape "
                             f"{labels.shape}")
    elif isinstance(labels, list) and len(labels) <= MAX_LABELS:
        if not all(type(v) is int for v in labels):
            raise ValueError(f"{path}: labels must be integers")
        if any(not 0 <= v <= 9 for v in labels):
            raise ValueError(f"{path} has labels outside 0..9")
    else:
        raise ValueError(f"{path}: labels must be a list of at most {MAX_LABELS} integers or an integer array")
    labels = np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path} has data of shape {data.shape} and {len(labels)} labels; "
                         f"expected (N, 3072) and N labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path} has labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(directory: str | os.PathLike) -> ImageData:
    """The official python batches: data_batch_1..5 (train) and test_batch."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10 folder {root} does not exist")
    train = [_read_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = _read_cifar_batch(root / "test_batch")
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    if len(x_train) == 0 or len(x_test) == 0:
        raise ValueError(f"CIFAR-10 folder {root} has {len(x_train)} training and {len(x_test)} test images; "
                         "both splits must be non-empty")
    return ImageData("cifar10", torch.from_numpy(x_train), torch.from_numpy(y_train),
                     torch.from_numpy(x_test), torch.from_numpy(y_test), CIFAR10_CLASSES,
                     augment="crop-flip", crop_padding=4)


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
