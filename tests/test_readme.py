"""The README's console session runs as written: every `$ robprune ...` line of its console blocks, in order, in a
fresh folder, with the exit status its shown output implies; deterministic lines of output match."""

from __future__ import annotations

import pytest
import re
import shlex
from pathlib import Path

from robprune.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
NEEDS_SHARED = "../shared"  # sessions on the CIFAR archive are run by the tests that skip without it


def _sessions() -> list[list[tuple[str, list[str]]]]:
    """Each console block as (command, shown output lines); continuation lines joined."""
    blocks = re.findall(r"```console\n(.*?)```", README.read_text(), re.S)
    sessions = []
    for block in blocks:
        steps, command, pending = [], None, ""
        for line in block.splitlines():
            if line.startswith("$ ") or pending:
                text = (pending + " " + line.removeprefix("$ ").strip()).strip()
                pending = text[:-1] if text.endswith("\\") else ""
                if not pending:
                    command = text
                    steps.append((command, []))
            elif steps:
                steps[-1][1].append(line)
        sessions.append(steps)
    return sessions


@pytest.mark.slow
def test_the_readme_console_session_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ran = 0
    for steps in _sessions():
        if any(NEEDS_SHARED in command for command, _ in steps):
            continue
        for command, shown in steps:
            argv = shlex.split(command)
            assert argv[0] == "robprune", command
            code = main(argv[1:])
            out = capsys.readouterr()
            expected = 2 if any(line.startswith("robprune: error") for line in shown) else 0
            assert code == expected, (command, out.err[-500:])
            for line in shown:
                if line.startswith(("| total |", "robprune: error")):  # exact counts and messages
                    assert line in out.out + out.err, (command, line)
                if line.startswith("test accuracy"):
                    assert re.search(r"sparsity [0-9.]+%", line).group(0) in out.out, (command, line)
            ran += 1
    assert ran >= 6
