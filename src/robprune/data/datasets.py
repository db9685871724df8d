"""Datasets held in memory as uint8 tensors, batched and augmented with tensor ops.

Three sources, chosen by a spec string:
    ``digits``             scikit-learn's bundled 8x8 digits (no download), fixed 80/20 split
    ``cifar10:DIR``        the official CIFAR-10 python batches (``cifar-10-batches-py``)
    ``imagefolder:PATH``   ``PATH/{train,test}/<class>/*.jpg|png``, a folder or a .tar/.tar.gz

Class index = position of the class name in sorted order. Decoded ImageFolder
arrays are cached as .npz outside the repository (``~/.cache/robprune``).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from .image_data import ImageData
from .imagefolder import load_imagefolder

SCHEMES = ("digits", "cifar10", "imagefolder")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


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


