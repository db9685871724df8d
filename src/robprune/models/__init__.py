"""Architectures: a registry of factories, user factories by import path, and input normalisation.

Every model takes images in [0, 1] and normalises them itself, so every
attack radius is in pixel units (``8/255``), as in RobustBench. A user's own
network enters through ``create_model("package.module:factory")`` or
:func:`wrap_model`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import sys
import math
from collections.abc import Sequence

from torch import nn

from . import cifar_resnet, resnet, small_cnn, vgg, wide_resnet  # noqa: F401  (registers the architectures)
from .cifar_resnet import BasicBlock, CifarResNet
from .layers import CIFAR10_MEAN, CIFAR10_STD, Normalize, Normalized, PadShortcut
from .registry import MODELS, list_models, register_model

MAX_CLASSES = 100_000  # metadata claiming more is refused before anything is allocated
MAX_CHANNELS = 64


def is_factory_spec(name: str) -> bool:
    """True for ``package.module:factory`` (a user's network), False for a registry name."""
    return isinstance(name, str) and ":" in name


def import_factory(spec: str):
    """The callable named by ``package.module:factory``; ValueError with one clear line otherwise."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model factory must look like package.module:function, got {spec!r}")
    said = io.StringIO()
    argv = sys.argv
    try:  # a module that parses the command line at import sees none, and what it prints is kept for the error
        sys.argv = [module_name]
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            module = importlib.import_module(module_name)
    except (Exception, SystemExit) as err:  # an import can fail in any way the user's code likes, sys.exit too
        last = said.getvalue().strip().splitlines()[-1:] or [""]
        raise ValueError(f"cannot import {module_name!r} for model factory {spec!r}: {type(err).__name__}: {err}"
                         + (f" (it printed: {last[0][:200]})" if last[0] else "")) from None
    finally:
        sys.argv = argv
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r} (model factory {spec!r})")
    if not callable(factory):
        raise ValueError(f"model factory {spec!r} is not callable")
    return factory


def _accepts(factory, name: str) -> bool:
    """Whether ``factory`` takes a keyword ``name`` (or any keyword)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _check_shape_args(num_classes, in_channels) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be an integer in [2, {MAX_CLASSES}], got {num_classes!r}")
    if in_channels is not None and (isinstance(in_channels, bool) or not isinstance(in_channels, int)
                                    or not 1 <= in_channels <= MAX_CHANNELS):
        raise ValueError(f"in_channels must be an integer in [1, {MAX_CHANNELS}], got {in_channels!r}")


def _check_stats(name: str, values, channels: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) != channels or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be {channels} finite numbers, got {values}")
    return values


def create_model(
    name: str,
    num_classes: int = 10,
    in_channels: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs,
) -> nn.Module:
    """Build an architecture by registry name or ``package.module:factory``; inputs in [0, 1].

    Registry models take ``in_channels`` (default from the registry: 3, or 1
    for ``small_cnn``), ``mean`` and ``std`` (default CIFAR-10 statistics, 0.5
    for small_cnn). A user factory is called as ``factory(num_classes=...,
    **kwargs)``; when ``mean``/``std`` are given its module is wrapped by
    :func:`wrap_model`. The returned model records how it was built
    (``robprune_spec``), so a checkpoint can rebuild it.
    """
    _check_shape_args(num_classes, in_channels)
    if is_factory_spec(name):
        factory = import_factory(name)
        call = dict(kwargs)
        if in_channels is not None and "in_channels" not in call and _accepts(factory, "in_channels"):
            call["in_channels"] = in_channels  # the data's channels, as registry models get them
        try:
            model = factory(num_classes=num_classes, **call)
        except (Exception, SystemExit) as err:  # a factory that calls sys.exit must not end the command with 0
            raise ValueError(f"model factory {name!r} raised {type(err).__name__}: {err}") from None
        if not isinstance(model, nn.Module):
            raise ValueError(f"model factory {name!r} returned {type(model).__name__}, not a torch.nn.Module")
        built = _first_conv_channels(model)
        if in_channels is not None and built is not None and built != in_channels:
            raise ValueError(f"model factory {name!r} builds {built}-channel inputs; the data has {in_channels} "
                             "(give the factory an in_channels argument, or build it for the data's channels)")
        channels = in_channels or built or 3
        if mean is not None or std is not None:
            model = wrap_model(model, mean if mean is not None else (0.0,) * channels,
                               std if std is not None else (1.0,) * channels)
    else:
        factory = MODELS.get(name)
        channels = in_channels or MODELS.info(name)["in_channels"]
        kw: dict = {"num_classes": num_classes, "in_channels": channels, **kwargs}
        if mean is not None or std is not None:
            kw["mean"] = _check_stats("mean", mean if mean is not None else (0.0,) * channels, channels)
            kw["std"] = _check_stats("std", std if std is not None else (1.0,) * channels, channels)
        model = factory(**kw)
    norm = getattr(model, "normalize", None)
    normalization = None
    if isinstance(norm, Normalize) and not norm.mean.is_meta:  # a model built on the meta device has no values
        normalization = {"mean": norm.mean.flatten().tolist(), "std": norm.std.flatten().tolist()}
    # Read back by save_checkpoint so a checkpoint knows how to rebuild its model.
    model.robprune_spec = {"arch": name, "num_classes": num_classes, "in_channels": channels,
                           "kwargs": dict(kwargs), "normalization": normalization}
    return model


def wrap_model(module: nn.Module, mean: Sequence[float], std: Sequence[float]) -> Normalized:
    """``module`` behind a Normalize layer: the result takes images in [0, 1] (eps in pixel units).

    The wrapped module's parameters appear under ``net.`` in the state dict.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"wrap_model needs a torch.nn.Module, got {type(module).__name__}")
    wrapped = Normalized(module, tuple(float(m) for m in mean), tuple(float(s) for s in std))
    spec = getattr(module, "robprune_spec", None)
    if spec is not None:
        wrapped.robprune_spec = {**spec, "normalization": {"mean": list(mean), "std": list(std)}}
    return wrapped


def _first_conv_channels(model: nn.Module) -> int | None:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (buffers such as BN statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


ARCHITECTURES = MODELS  # the old name: ``name in ARCHITECTURES`` still works

__all__ = ["ARCHITECTURES", "BasicBlock", "CIFAR10_MEAN", "CIFAR10_STD", "CifarResNet", "MODELS", "Normalize",
           "Normalized", "PadShortcut", "count_parameters", "create_model", "import_factory", "is_factory_spec",
           "list_models", "register_model", "wrap_model"]
