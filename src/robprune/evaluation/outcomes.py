"""The one reader of stored per-image outcomes: which images a stored evaluation classified correctly.

An evaluation stored with per-image outcomes (``run_evaluation`` with ``per_image``: an attack or a suite) keeps
them as packed bits under two names: ``clean_correct_bits`` (clean) and ``robust[i].correct_bits`` (robust at the
i-th eps: against the attack, or against every attack of a suite). Reports read them only through here, so the
encoding lives in two functions (``pack_bits``/``unpack_bits``) and this module; results stored by earlier
versions are converted on reading (``robprune.results.upgrade``).
"""

from __future__ import annotations

import numpy as np

from .accuracy import unpack_bits


def correct(ev: dict, i: int | None = None) -> np.ndarray:
    """Per image of an evaluation: classified correctly clean (``i`` None) or at eps ``i`` under the attack (every
    attack of a suite)."""
    text = ev["clean_correct_bits"] if i is None else ev["robust"][i]["correct_bits"]
    return unpack_bits(text, ev["n"])


__all__ = ["correct"]
