"""The one reader of stored per-image outcomes: which images a stored evaluation classified correctly.

An evaluation stored with per-image outcomes (``evaluate(..., per_image=True)`` and the suite units of the
studies) keeps them as packed bits under three names: ``clean_correct_bits`` (clean), ``robust[i].correct_bits``
(attack at the i-th eps) and, for a suite, ``rows[i].robust_bits``. Reports read them only through here, so
the encoding lives in two functions (``pack_bits``/``unpack_bits``) and this module.
"""

from __future__ import annotations

import numpy as np

from .accuracy import unpack_bits


def correct(ev: dict, i: int | None = None) -> np.ndarray:
    """Per image of an evaluation: classified correctly clean (``i`` None) or under the attack at eps ``i``."""
    text = ev["clean_correct_bits"] if i is None else ev["robust"][i]["correct_bits"]
    return unpack_bits(text, ev["n"])


def suite_robust(suite: dict, i: int = 0) -> np.ndarray:
    """Per image of a suite result: robust against every attack of the suite at its ``i``-th eps."""
    return unpack_bits(suite["rows"][i]["robust_bits"], suite["n"])


__all__ = ["correct", "suite_robust"]
