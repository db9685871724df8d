"""A study's results.json and report, rewritten after every unit so a partial run is readable; processes
sharing the output folder merge each other's rows and compute time."""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from ..distributed import is_main
from ..io import write_json, write_text_atomic
from ..results import upgrade

FIGURES_EVERY_S = 60.0  # a running study redraws its figures at most this often (and always at the end)
ELAPSED_FILE = "elapsed.json"  # compute seconds per invocation, beside results.json


def _elapsed_parts(saved: dict) -> dict[str, float]:
    """Compute seconds per invocation from a saved results.json (one "earlier" part for a file from before the
    parts were kept)."""
    parts = saved.get("elapsed_parts")
    if isinstance(parts, dict):
        return {str(k): float(v) for k, v in parts.items()}
    try:
        before = float(saved.get("elapsed_s", 0.0))
    except (TypeError, ValueError):
        before = 0.0
    return {"earlier": before} if before else {}


def _merge_rows(state: dict, disk: dict) -> None:
    """Add to ``state`` what another process sharing the folder saved in ``disk`` and this one lacks: rows of
    models (and a row's suite result, for the same trained model), search entries and sweep points. Only a file
    made by the same study configuration on the same data counts: another configuration's rows are stale."""
    if (disk.get("config"), disk.get("data")) != (json.loads(json.dumps(state.get("config"))), state.get("data")):
        return
    for seed, rows in (disk.get("seeds") or {}).items():
        mine = state.setdefault("seeds", {}).setdefault(seed, {})
        for name, row in rows.items():
            if name not in mine:
                mine[name] = row
            elif mine[name].get("train") == row.get("train"):
                for k in ("suite", "suite_skipped"):
                    if k in row and "suite" not in mine[name] and "suite_skipped" not in mine[name]:
                        mine[name][k] = row[k]
    if isinstance(disk.get("search"), dict) and isinstance(state.get("search"), dict):
        for label, entry in disk["search"].items():
            state["search"].setdefault(label, entry)
    if isinstance(disk.get("sweep"), list) and isinstance(state.get("sweep"), list):
        def point(p: dict) -> tuple:
            return p.get("seed"), p.get("method"), p.get("ratio"), p.get("reading")

        have = {point(p) for p in state["sweep"]}
        state["sweep"] += [p for p in disk["sweep"] if point(p) not in have]


class StudyState:
    """results.json and the report, rewritten after every unit so a partial run is readable."""

    def __init__(self, out: Path, state: dict, render: Callable[[dict], str], on_update=None, figures=None) -> None:
        self.out, self.state, self.render, self.t0, self.on_update = out, state, render, time.time(), on_update
        self.figures = figures  # (state, out) -> figure names; None: the studies' (study_figures)
        self.me = f"{socket.gethostname()}:{os.getpid()}:{int(self.t0)}"
        # compute time of earlier (and concurrent) invocations; elapsed.json keeps it should results.json be damaged
        self.parts = {**_elapsed_parts(self._on_disk(ELAPSED_FILE)), **_elapsed_parts(self._on_disk())}
        self.figures_at = -math.inf  # when the figures were last drawn

    def _on_disk(self, name: str = "results.json") -> dict:
        try:
            saved = json.loads((self.out / name).read_text())
        except (OSError, ValueError):
            return {}
        return saved if isinstance(saved, dict) else {}

    def save(self) -> None:
        # Processes sharing the output folder (store.py's claims) each add what the others saved: rows they have not
        # computed or loaded yet, and their compute time, which the total sums over every invocation.
        disk = upgrade(self._on_disk())  # rows saved by an earlier version are merged in today's shape
        _merge_rows(self.state, disk)
        parts = {**self.parts, **_elapsed_parts(self._on_disk(ELAPSED_FILE)), **_elapsed_parts(disk),
                 self.me: time.time() - self.t0}
        self.state["elapsed_parts"] = parts
        self.state["elapsed_s"] = sum(parts.values())
        log = self.out / "runs.log"
        self.state["runs_log"] = log.read_text() if log.is_file() else ""
        self.state["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        if is_main():
            write_json(self.out / ELAPSED_FILE, {"elapsed_parts": parts})
            write_json(self.out / "results.json", self.state)
            try:
                from ..reporting.study_figures import write_study_figures

                # drawing every figure after every unit cost a third of a quick run: once a minute, and at the end
                if self.state.get("done") or time.time() - self.figures_at >= FIGURES_EVERY_S:
                    self.state["figures"] = (self.figures or write_study_figures)(self.state, self.out)
                    self.figures_at = time.time()
                text = self.render(self.state)
            except Exception as err:  # a report bug must never stop a long run; the results are saved above
                text = (f"# Report not rendered\n\nThe renderer failed ({type(err).__name__}: {err}); the results are "
                        "in results.json. Re-render with the command's --report-only.\n")
            write_text_atomic(self.out / "report.md", text)
        if self.on_update is not None:
            self.on_update(self.state)
