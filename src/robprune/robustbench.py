"""RobustBench model files in robprune's architectures (``robprune import FILE --format robustbench``).

RobustBench (Croce et al. 2021) stores each leaderboard entry as the state dict
of one of a few architectures (``robustbench/model_zoo/architectures``). Three
of them are robprune's, up to key names:

- ``WideResNet`` (TRADES' code): ``block{1,2,3}.layer.{i}.`` are our
  ``block{1,2,3}.{i}.``; the unused ``sub_block1`` of some entries is dropped;
  ``bias_last=False`` files get a zero classifier bias. Entries: Carmon2019Unlabeled,
  Sehwag2020Hydra, Wang2020Improving (WRN-28-10), Zhang2019Theoretically,
  Huang2020Self, Chen2020Efficient (WRN-34-10) and others built on it.
- ``PreActResNet(PreActBlockV2, bn_before_fc=True)``: our ``preact_resnet18`` with
  ``bn.`` for our ``bn1.`` (Rice2020Overfitting L2, Kireev2021Effectiveness).
  Their ``PreActBlock`` (shortcut of the raw input, no BN before the classifier:
  Wong2020Fast, Andriushchenko2020Understanding) is another network and is refused.
- ``ResNet18`` (kuangliu's): our ``resnet18``, same keys.

The input normalisation is the file's ``mu``/``sigma`` buffers when it has
them, else the identity (the entries that normalise in code, e.g.
Hendrycks2019Using's 2x - 1, need ``mean``/``std`` given by the user).
"""

from __future__ import annotations

import re

import torch

ARCHS = {"wrn_28_4": "wrn", "wrn_28_10": "wrn", "wrn_34_10": "wrn", "preact_resnet18": "preact",
         "resnet18": "resnet"}


def _channels(value: torch.Tensor) -> list[float]:
    return [float(v) for v in value.flatten()]


def robustbench_state(state: dict[str, torch.Tensor], arch: str) -> tuple[dict[str, torch.Tensor], tuple, tuple]:
    """(our state dict, mean, std) of a RobustBench state dict: the file's mu/sigma, else the identity."""
    kind = ARCHS.get(arch)
    if kind is None:
        raise ValueError(f"the robustbench format maps {', '.join(ARCHS)}; not {arch}")
    state = {k.removeprefix("model."): v for k, v in state.items()}
    mu, sigma = state.pop("mu", None), state.pop("sigma", None)
    if (mu is None) != (sigma is None):
        raise ValueError("the file has one of the normalisation buffers mu and sigma but not the other")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if kind == "wrn":
            if key.startswith("sub_block1."):
                continue  # built but never called in RobustBench's forward
            key = re.sub(r"^block(\d)\.layer\.(\d+)\.", r"block\1.\2.", key)
        elif kind == "preact":
            key = re.sub(r"^bn\.", "bn1.", key)
        out[key] = value
    if kind == "wrn" and "fc.weight" in out and "fc.bias" not in out:  # bias_last=False
        out["fc.bias"] = torch.zeros(out["fc.weight"].shape[0], dtype=out["fc.weight"].dtype)
    if kind == "preact" and "linear.weight" in out and "bn1.weight" not in out:
        raise ValueError("this PreActResNet has no BatchNorm before its classifier (RobustBench's PreActBlock, e.g. "
                         "Wong2020Fast, Andriushchenko2020Understanding): its blocks add the raw input, robprune's "
                         "preact_resnet18 the pre-activated one; it is another network and cannot be imported")
    if mu is None:
        channels = next((v.shape[1] for k, v in out.items() if k == "conv1.weight"), 3)
        return out, (0.0,) * channels, (1.0,) * channels
    return out, tuple(_channels(mu)), tuple(_channels(sigma))


__all__ = ["ARCHS", "robustbench_state"]
