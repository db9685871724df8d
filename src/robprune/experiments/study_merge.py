"""Merge the results of one study run in several output folders (other seeds on another machine, a GPU run of
the same grid, a later run of more methods on the same dense models) into one results.json: the same study, data
and configuration except the seeds and the grid's arms (methods, sparsities); an arm of a seed found in two folders
must hold the same results in both (measured times aside)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from ..io import write_json, write_text_atomic
from ..results import load_results

# the grid fields merged folders may differ in (the union is taken), and all the fields they may differ in
GRID_FIELDS = ("methods", "sparsities", "amounts")
MERGED_FIELDS = ("seeds", *GRID_FIELDS, "hinge")
# what a result may differ in when it is computed again: the measured times
TIMING_KEYS = frozenset({"seconds", "images_per_s"})


def _load(folder: Path, study: str, data: str) -> dict:
    path = folder / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; --merge takes output folders of finished or partial "
                                f"'{study}' studies")
    state = load_results(path)
    if "config" not in state or "seeds" not in state:
        raise ValueError(f"{path} is not a study results file (no 'config' and 'seeds')")
    if state.get("study") != study:
        raise ValueError(f"{path} holds a '{state.get('study')}' study, not '{study}'")
    if not _same_data(str(state.get("data")), data):
        raise ValueError(f"{path} was run on --data {state.get('data')}, not {data}")
    return state


def _same_data(a: str, b: str) -> bool:
    """The same data set: the same kind and file name (the path to it may differ between machines)."""
    (kind_a, _, where_a), (kind_b, _, where_b) = a.partition(":"), b.partition(":")
    return kind_a == kind_b and Path(where_a).name == Path(where_b).name


def _without_merged(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in MERGED_FIELDS}


def _check_same_config(first: tuple[Path, dict], other: tuple[Path, dict]) -> None:
    a, b = _without_merged(first[1]["config"]), _without_merged(other[1]["config"])
    if a != b:
        fields = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ValueError(f"{other[0]} was run with another configuration than {first[0]} (differs in "
                         f"{', '.join(fields)}); only folders that differ in their seeds, methods, "
                         "sparsities or hinge arms merge")


def _machine(states: list[tuple[Path, dict]]) -> dict:
    machines = [s.get("machine") or {} for _, s in states]
    if all(m == machines[0] for m in machines):
        return machines[0]
    lines = [f"{folder}: {m.get('line') or '?'}, {m.get('threads') or '?'} torch thread(s), device "
             f"{m.get('device') or '?'}" for (folder, _), m in zip(states, machines)]
    devices = sorted({str(m.get("device") or "?") for m in machines})
    threads = sorted({str(m.get("threads") or "?") for m in machines})
    return {"line": "runs that differ in machine or threads (" + "; ".join(lines) + ")", "device": "/".join(devices),
            "threads": "/".join(threads)}


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _grid_union(values: list[list], order) -> list:
    """The union of a grid field's values: in the default grid's order, then in the order first met."""
    seen: list = []
    for v in values:
        seen += [x for x in v if x not in seen]
    order = list(order or [])
    return sorted(seen, key=lambda x: (order.index(x) if x in order else len(order), seen.index(x)))


def _arm_order(config: dict):
    """The order a methods or channel study runs its arms in: the dense arm, then per sparsity the methods without
    the hinge, then with it (arm names 'METHOD[+hinge]-SPARSITY')."""
    methods, grid = config.get("methods") or [], config.get("sparsities") or config.get("amounts") or []

    def key(arm: str):
        m = re.fullmatch(r"(.+?)(\+hinge)?-([0-9.e-]+)", arm)
        if not m or m[1] not in methods or float(m[3]) not in grid:
            return (-1, 0, 0)
        return (grid.index(float(m[3])), bool(m[2]), methods.index(m[1]))
    return key


def merge_states(folders: list[Path], study: str, data: str, out: Path | None = None,
                 default_grid: dict | None = None) -> dict:
    """One results state holding every seed and arm of ``folders`` (their study, data and configuration checked);
    ``default_grid`` orders the merged methods and sparsities."""
    if len(folders) < 2:
        raise ValueError("--merge needs at least two output folders")
    if len({f.resolve() for f in folders}) != len(folders):
        raise ValueError("--merge names the same folder twice")
    if out is not None and out.resolve() in {f.resolve() for f in folders}:
        raise ValueError(f"--out {out} is one of the merged folders; choose a new output folder")
    states = [(f, _load(f, study, data)) for f in folders]
    for other in states[1:]:
        _check_same_config(states[0], other)
    merged = json.loads(json.dumps(states[0][1]))
    merged["data"] = data
    merged["seeds"], arm_from, parts = {}, {}, {}
    for folder, state in states:
        for seed, rows in state["seeds"].items():
            into = merged["seeds"].setdefault(seed, {})
            for arm, row in rows.items():
                have = into.setdefault(arm, {})
                for measure, value in row.items():  # a partial folder may lack a measure (a suite not yet run)
                    if measure in have and _without_timing(have[measure]) != _without_timing(value):
                        raise ValueError(f"seed {seed} {arm} is in {arm_from[seed, arm]} and {folder} with different "
                                         f"results ({measure}); merge folders that computed it the same way (the same "
                                         "dense model)")
                    have.setdefault(measure, value)
                arm_from.setdefault((seed, arm), folder)
        for key, seconds in (state.get("elapsed_parts") or {"earlier": state.get("elapsed_s", 0.0)}).items():
            parts[f"{folder}|{key}" if key in parts else key] = seconds
    seeds = sorted({int(s) for _, st in states for s in st["config"]["seeds"]} | {int(s) for s in merged["seeds"]})
    merged["config"]["seeds"] = seeds
    if "hinge" in merged["config"]:  # the '+hinge' arms of a folder that ran them
        merged["config"]["hinge"] = any(bool(st["config"].get("hinge")) for _, st in states)
    for field in GRID_FIELDS:
        if field in merged["config"]:
            merged["config"][field] = _grid_union([st["config"].get(field) or [] for _, st in states],
                                                  (default_grid or {}).get(field))
    merged["elapsed_parts"], merged["elapsed_s"] = parts, sum(float(v) for v in parts.values())
    if "methods" in merged["config"]:  # arms from several folders: in the order one run would have written them
        key = _arm_order(merged["config"])
        merged["seeds"] = {seed: dict(sorted(rows.items(), key=lambda kv: key(kv[0])))
                           for seed, rows in merged["seeds"].items()}
    arms = [set(rows) for rows in merged["seeds"].values()]  # a seed without an arm another seed has: not done
    merged["done"] = all(bool(s.get("done")) for _, s in states) and all(a == arms[0] for a in arms)
    merged["machine"] = _machine(states)
    merged["merged_from"] = [{"folder": str(f), "seeds": sorted(int(s) for s in st["seeds"]),
                              "done": bool(st.get("done"))} for f, st in states]
    merged["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
    for _, state in states[1:]:  # a record only a later folder has (the channel study's latency, measured once)
        for key, value in state.items():
            merged.setdefault(key, value)
    timed = [s["latency"] for _, s in states if s.get("latency")]
    if timed:  # latencies are ratios of shapes timed side by side in one run: keep the run that timed the most shapes
        merged["latency"] = max(timed, key=lambda lat: len(lat.get("ms") or {}))
    for key in ("search", "sweep"):  # the adversarial and scratch studies' extra records, by seed where they have one
        if any(key in s for _, s in states):
            merged[key] = _union([s.get(key) for _, s in states])
    return merged


def _union(values: list):
    """Dicts merged (the first folder's entry wins), or lists concatenated without repeats."""
    if all(isinstance(v, dict) or v is None for v in values):
        out: dict = {}
        for v in values:
            for k, entry in (v or {}).items():
                out.setdefault(k, entry)
        return out
    out_list: list = []
    for v in values:
        out_list += [p for p in (v or []) if p not in out_list]
    return out_list


def merged_log(folders: list[Path], command: str) -> str:
    """The runs.log of a merged folder: every input folder's log under its name, then the merge itself."""
    parts = []
    for folder in folders:
        log = folder / "runs.log"
        text = log.read_text().strip() if log.is_file() else "(no runs.log)"
        # a merged folder's log is already one section per folder it came from
        parts.append(text if text.startswith("# ") else f"# {folder}:\n{text}")
    parts.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} merged: {command}")
    return "\n".join(parts) + "\n"


def write_merged(folders: list[Path], out: Path, study: str, data: str, command: str,
                 default_grid: dict | None = None) -> dict:
    """Merge ``folders`` into ``out``/results.json and runs.log (computes nothing; the report is rendered by the
    caller)."""
    state = merge_states(folders, study, data, out, default_grid)
    log = merged_log(folders, command)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "runs.log", log)
    state["runs_log"] = log
    write_json(out / "results.json", state)
    return state


__all__ = ["merge_states", "merged_log", "write_merged"]
