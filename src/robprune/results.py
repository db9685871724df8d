"""The one schema of a study's results.json, and the converter every stored file is read through.

A results file (schema 2) holds: ``schema``; ``study`` (or ``protocol``) naming what made it; the ``config`` and
``data`` identity; ``machine``, recorded at run time (``line``: processor, logical CPUs, torch; ``device``;
``threads``); ``runs_log`` (every invocation); and the rows, ``seeds[seed][arm][measure]`` (the fine-tuning
protocol keeps its paper-shaped ``stages``). Every evaluation inside has the one shape ``run_evaluation`` returns
(``n``, ``clean``, per eps a ``robust`` row with ``accuracy`` and, with per-image outcomes, ``correct_bits``;
a suite adds ``suite`` and its ``attacks``), whose bits only ``evaluation.outcomes`` unpacks.

:func:`upgrade` turns a file written by an earlier version (schema 1: suites stored as ``rows`` of
``worst_case``, the machine as three loose fields) into schema 2; reports, merges and ``--report-only`` read
results only through :func:`load_results` / :func:`upgrade`, so the committed results render unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch

SCHEMA = 2


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def machine_line() -> str:
    """The machine a run happens on (processor model, logical CPUs, torch), recorded with its results at run
    time."""
    import os

    return f"{_cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"


def machine_record(device) -> dict:
    """The machine a run happens on, recorded with its results at run time."""
    return {"line": machine_line(), "device": str(device), "threads": torch.get_num_threads()}


def upgrade_evaluation(ev):
    """A stored evaluation in the one shape; a schema-1 suite result (``rows`` of ``worst_case``) is converted,
    anything else returned as it is."""
    if not isinstance(ev, dict) or "rows" not in ev or "robust" in ev:
        return ev
    from .evaluation.accuracy import pack_bits

    out = {k: v for k, v in ev.items() if k != "rows"}
    rows = ev["rows"]
    if rows:
        out["clean"] = rows[0]["clean"]
    out["robust"] = []
    for row in rows:
        r = {"eps": row["eps"], **row["worst_case"], "attacks": row["attacks"]}
        if "robust_bits" in row:
            r["correct_bits"] = row["robust_bits"]
        elif "robust_mask" in row:
            r["correct_bits"] = pack_bits(torch.tensor(row["robust_mask"]))
        out["robust"].append(r)
    return out


def _upgrade_value(value):
    if isinstance(value, dict):
        if "rows" in value and "suite" in value:
            value = upgrade_evaluation(value)
        return {k: _upgrade_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_upgrade_value(v) for v in value]
    return value


def upgrade(state: dict) -> dict:
    """Any results.json robprune wrote, in schema 2 (a file already in it comes back equal)."""
    if not isinstance(state, dict) or state.get("schema") == SCHEMA:
        return state
    out = _upgrade_value(state)
    if not isinstance(out.get("machine"), dict):
        out["machine"] = {"line": out.get("machine"), "device": out.get("device"),
                          "threads": out.get("torch_threads")}
    for k in ("device", "torch_threads"):
        out.pop(k, None)
    out["schema"] = SCHEMA
    return out


def load_results(path: Path) -> dict:
    """A results.json read and upgraded; a file that is not one raises ValueError in one line."""
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as err:
        raise ValueError(f"{path} is not a readable results file ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a results file (not a JSON object)")
    return upgrade(state)


def rows(state: dict) -> Iterator[tuple[int, str, str, object]]:
    """Every stored measure of a study as (seed, arm, measure, value)."""
    for seed, arms in (state.get("seeds") or {}).items():
        for arm, row in arms.items():
            for measure, value in row.items():
                yield int(seed), arm, measure, value


__all__ = ["SCHEMA", "load_results", "machine_line", "machine_record", "rows", "upgrade", "upgrade_evaluation"]
