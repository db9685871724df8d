"""Reports of the multi-seed studies (filled in below)."""

from __future__ import annotations

import json


def render_scratch(state: dict) -> str:
    return "# scratch protocol (in progress)\n\n```\n" + json.dumps(sorted(state.get("seeds", {})), indent=1) + "\n```\n"


def render_adversarial(state: dict) -> str:
    return "# adversarial study (in progress)\n\n```\n" + json.dumps(sorted(state.get("seeds", {})), indent=1) + "\n```\n"


def rewrite_study_report(out) -> str:
    from pathlib import Path

    from ..io import write_text_atomic

    path = Path(out) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the study first")
    state = json.loads(path.read_text())
    text = render_adversarial(state) if state.get("study") == "adversarial" else render_scratch(state)
    write_text_atomic(Path(out) / "report.md", text)
    return text
