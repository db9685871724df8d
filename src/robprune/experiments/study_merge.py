"""Merge the results of one study run in several output folders (other seeds on another machine, a GPU run of
the same grid) into one results.json: the same study, data and configuration except the seeds; a seed found in two
folders must hold the same rows in both."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..io import write_json, write_text_atomic
from ..results import load_results

# configuration fields that may differ between merged folders (the union is taken)
MERGED_FIELDS = ("seeds",)


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
                         f"{', '.join(fields)}); only folders that differ in their seeds merge")


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


def merge_states(folders: list[Path], study: str, data: str, out: Path | None = None) -> dict:
    """One results state holding every seed of ``folders`` (their study, data and configuration checked)."""
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
    merged["seeds"], seed_from, parts = {}, {}, {}
    for folder, state in states:
        for seed, rows in state["seeds"].items():
            if seed in merged["seeds"] and merged["seeds"][seed] != rows:
                raise ValueError(f"seed {seed} is in {seed_from[seed]} and {folder} with different results; merge "
                                 "folders that ran different seeds")
            merged["seeds"].setdefault(seed, rows)
            seed_from.setdefault(seed, folder)
        for key, seconds in (state.get("elapsed_parts") or {"earlier": state.get("elapsed_s", 0.0)}).items():
            parts[f"{folder}|{key}" if key in parts else key] = seconds
    seeds = sorted({int(s) for _, st in states for s in st["config"]["seeds"]} | {int(s) for s in merged["seeds"]})
    merged["config"]["seeds"] = seeds
    merged["elapsed_parts"], merged["elapsed_s"] = parts, sum(float(v) for v in parts.values())
    merged["done"] = all(bool(s.get("done")) for _, s in states)
    merged["machine"] = _machine(states)
    merged["merged_from"] = [{"folder": str(f), "seeds": sorted(int(s) for s in st["seeds"]),
                              "done": bool(st.get("done"))} for f, st in states]
    merged["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
    for _, state in states[1:]:  # a record only a later folder has (the channel study's latency, measured once)
        for key, value in state.items():
            merged.setdefault(key, value)
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
        parts.append(f"# {folder}:\n{text}")
    parts.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} merged: {command}")
    return "\n".join(parts) + "\n"


def write_merged(folders: list[Path], out: Path, study: str, data: str, command: str) -> dict:
    """Merge ``folders`` into ``out``/results.json and runs.log (computes nothing; the report is rendered by the
    caller)."""
    state = merge_states(folders, study, data, out)
    log = merged_log(folders, command)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "runs.log", log)
    state["runs_log"] = log
    write_json(out / "results.json", state)
    return state


__all__ = ["merge_states", "merged_log", "write_merged"]
