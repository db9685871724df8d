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
import os
import pickle
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

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


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batch dicts only: numpy arrays and builtins, no other callables."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how Python 3 writes bytes in protocol 2; harmless

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 batch {path} does not exist")
    try:
        with path.open("rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path} is not a CIFAR-10 batch file: {err}") from None
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
    return ImageData("cifar10", torch.from_numpy(x_train), torch.from_numpy(y_train),
                     torch.from_numpy(x_test), torch.from_numpy(y_test), CIFAR10_CLASSES,
                     augment="crop-flip", crop_padding=4)


def _decode(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"cannot decode image {name}: {err}") from None


def _safe_member_path(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"refusing archive {archive}: member {name!r} points outside the tree")
    return PurePosixPath(*[p for p in path.parts if p != "."])


def _iter_folder_files(root: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    resolved = root.resolve()
    for path in sorted(root.rglob("*")):
        if path.is_symlink() and not path.resolve().is_relative_to(resolved):
            raise ValueError(f"refusing {path}: a symlink out of the tree")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            yield PurePosixPath(path.relative_to(root).as_posix()), path.read_bytes()


def _iter_tar_files(archive: Path) -> Iterator[tuple[PurePosixPath, bytes]]:
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                rel = _safe_member_path(member.name, archive)
                if member.issym() or member.islnk():
                    raise ValueError(f"refusing archive {archive}: member {member.name!r} is a link")
                if member.isfile() and rel.suffix.lower() in IMAGE_SUFFIXES:
                    yield rel, tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"cannot read archive {archive}: {err}") from None


def _split_class(rel: PurePosixPath) -> tuple[str, str] | None:
    """('train'|'test', class) for .../split/class/file, wherever the tree starts inside the archive."""
    parts = rel.parts
    if len(parts) >= 3 and parts[-3] in ("train", "test"):
        return parts[-3], parts[-2]
    return None


def _source_key(path: Path) -> str:
    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_imagefolder(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                     progress=None) -> ImageData:
    """An ImageFolder tree with train/ and test/ splits, from a folder or a tar archive."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ImageFolder {path} does not exist")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_file = cache / f"imagefolder-{_source_key(path)}.npz" if path.is_file() else None
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    else:
        if progress is not None and cache_file is not None:
            progress({"kind": "note", "text": f"decoding {path} once (cached afterwards in {cache})"})
        arrays = _decode_imagefolder(path)
        if cache_file is not None:
            from ..io import write_bytes_atomic

            buf = io.BytesIO()
            np.savez(buf, **arrays)
            write_bytes_atomic(cache_file, buf.getvalue())
    classes = tuple(str(c) for c in arrays["classes"])
    return ImageData(f"imagefolder:{path.name}", torch.from_numpy(arrays["x_train"]),
                     torch.from_numpy(arrays["y_train"]), torch.from_numpy(arrays["x_test"]),
                     torch.from_numpy(arrays["y_test"]), classes, augment="crop-flip", crop_padding=4)


def _decode_imagefolder(path: Path) -> dict[str, np.ndarray]:
    files = _iter_folder_files(path) if path.is_dir() else _iter_tar_files(path)
    found: dict[str, list[tuple[str, str, np.ndarray]]] = {"train": [], "test": []}
    shape = None
    for rel, data in files:
        split_class = _split_class(rel)
        if split_class is None:
            continue
        image = _decode(data, str(rel))
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
