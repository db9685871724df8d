"""The model registry: ``@register_model`` on a factory function adds an architecture everywhere."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("architecture")


def register_model(name: str | None = None, *, params: int | None = None, in_channels: int = 3):
    """Register a factory ``f(num_classes=, in_channels=, mean=, std=) -> nn.Module``.

    ``params`` is the documented parameter count with 10 classes (the tests
    check it); ``in_channels`` the default number of input channels.
    """
    return MODELS.register(name, params=params, in_channels=in_channels)


def list_models() -> list[str]:
    """Names of the registered architectures."""
    return MODELS.names()
