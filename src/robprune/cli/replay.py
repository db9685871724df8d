"""``--config FILE`` on train, prune and eval: replay the command line recorded in a run's config.json.

(``eval`` records its command in eval.json, which ``--config`` takes as well.)

The recorded ``argv`` is parsed again by today's parser (so every value passes
the same checks and keeps its units), then whatever the new command line gives
replaces it: ``robprune train --config runs/a/config.json --seed 1 --out
runs/a-seed1`` is run a's training with another seed. Positional checkpoints
given anew replace the recorded ones. A recorded ``--config`` is followed (a
replay of a replay), up to a few levels. ``--overwrite`` and ``--resume`` are
never replayed: they are decisions about the new run's folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COMMANDS = ("train", "prune", "eval")
FOLDER_DECISIONS = ("overwrite", "resume")  # about the new run's folder: never taken from a recorded run
NOT_REPLAYED = ("config", *FOLDER_DECISIONS)
MAX_BYTES = 1 << 20  # a config.json is a few kilobytes
MAX_DEPTH = 4


class _Unset:
    """The default of every option during a replay: marks what the new command line did not give."""

    def __repr__(self) -> str:
        return "(recorded)"


UNSET = _Unset()


def add_config_argument(p) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="replay the command line recorded in a run's config.json (or eval.json); options given "
                        "here override it, checkpoints given here replace the recorded ones")


def config_path(argv: list[str]) -> tuple[str, str] | None:
    """``(command, FILE)`` when ``argv`` asks train, prune or eval to replay FILE, else None."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        return None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return command, argv[i + 1]
        if arg.startswith("--config="):
            return command, arg.split("=", 1)[1]
    return None


def recorded_argv(path: str, command: str) -> list[str]:
    """The command line a config.json records, checked to be one of ``command``."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--config {path} does not exist (it is the config.json of an earlier run)")
    if file.stat().st_size > MAX_BYTES:
        raise ValueError(f"--config {path} is {file.stat().st_size} bytes; a run's config.json is a few kilobytes")
    try:
        record = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--config {path} is not JSON ({err}); give the config.json of an earlier run") from None
    if isinstance(record, dict) and "argv" not in record and isinstance(record.get("config"), dict):
        record = record["config"]  # eval.json carries its command's config
    argv = record.get("argv") if isinstance(record, dict) else None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"--config {path} records no command line ('argv'); give the config.json that robprune "
                         "wrote beside a run's results")
    if record.get("command") != command or argv[0] != command:
        raise ValueError(f"--config {path} records 'robprune {record.get('command')}'; it cannot configure "
                         f"'robprune {command}'")
    return argv


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _without(argv: list[str], sub: argparse.ArgumentParser, dests: tuple[str, ...]) -> list[str]:
    """``argv`` less the options whose destination is in ``dests`` (with their values)."""
    flags = {s: a for a in sub._actions if a.dest in dests for s in a.option_strings}
    out, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in flags:
            skip = 0 if "=" in arg or flags[name].nargs == 0 else 1
            continue
        out.append(arg)
    return out


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str], depth: int = 0) -> argparse.Namespace:
    """Parse ``argv``; with ``--config FILE``, the recorded command line fills every option not given."""
    asked = config_path(argv)
    if asked is None:
        return parser.parse_args(argv)
    if depth >= MAX_DEPTH:
        raise ValueError(f"--config {asked[1]}: more than {MAX_DEPTH} replays of replays; give the first run's "
                         "config.json")
    command, path = asked
    sub = _subparser(parser, command)
    recorded = parse_with_config(parser, _without(recorded_argv(path, command), sub, FOLDER_DECISIONS),
                                 depth + 1)
    saved = [(a, a.default, a.required, a.nargs) for a in sub._actions if a.dest != "help"]
    try:
        for action, _, _, nargs in saved:
            action.required = False
            if not isinstance(action, argparse._AppendAction):  # an append option keeps None: it appends to it
                action.default = UNSET
            if not action.option_strings:  # positionals given anew replace the recorded ones
                action.nargs = "*" if nargs in ("+", "*") else "?"
        args = parser.parse_args(argv)
    finally:
        for action, default, required, nargs in saved:
            action.default, action.required, action.nargs = default, required, nargs
    appended = {a.dest for a, _, _, _ in saved if isinstance(a, argparse._AppendAction)}
    for name, value in vars(args).items():
        if value is UNSET or (value is None and name in appended):
            if name in NOT_REPLAYED or not hasattr(recorded, name):
                default = next((d for a, d, _, _ in saved if a.dest == name), None)
                setattr(args, name, default)
            else:
                setattr(args, name, getattr(recorded, name))
    return args


__all__ = ["add_config_argument", "parse_with_config"]
