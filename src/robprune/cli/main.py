"""The ``robprune`` command: builds the parser from the command modules and turns every error into one line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from ..distributed import check_env, launched_by_torchrun, rank_from_env, teardown
from ..io import OutputLock, remove_stale_temporaries
from . import cmd_demo, cmd_eval, cmd_export, cmd_import, cmd_prune, cmd_reproduce, cmd_stats, cmd_study, cmd_train
from .common import Parser, Progress, UsageError, say_error
from .replay import COMMANDS as REPLAYABLE
from .replay import add_config_argument, parse_with_config

COMMANDS = {"demo": cmd_demo, "train": cmd_train, "prune": cmd_prune, "eval": cmd_eval, "stats": cmd_stats,
            "import": cmd_import, "export": cmd_export, "reproduce": cmd_reproduce,
            "study": cmd_study}
RESULT_MARKER = "config.json"  # every command writes it beside its results
# what a folder holds once some command has produced something there (a folder with none of these is free)
RESULT_FILES = (RESULT_MARKER, "model.safetensors", "last.safetensors", "eval.json", "stats.json",
                "results.json", "report.md")


def build_parser() -> Parser:
    parser = Parser(prog="robprune", description="Pruning neural networks for adversarial robustness.",
                    epilog="example:\n  " + cmd_demo.EXAMPLE)
    parser.add_argument("--version", action="version", version=f"robprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           epilog="example:\n  " + module.EXAMPLE)
        module.add_arguments(p)
        if name in REPLAYABLE:
            add_config_argument(p)
        p.add_argument("--overwrite", action="store_true",
                       help="replace the output file (export, import) or the results of an earlier run in --out "
                            "(refused otherwise)")
    return parser


def _check_out(args) -> Path:
    """Refuse an unusable output path before any work is done (nothing is created here)."""
    if not str(args.out).strip():
        raise ValueError("--out is empty; name an output folder")
    out = Path(args.out)
    folder = out.parent if getattr(COMMANDS[args.command], "SINGLE_FILE", False) else out
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                raise NotADirectoryError(f"output path {out} cannot be created: {p} is a file")
            if not os.access(p, os.W_OK | os.X_OK):
                raise PermissionError(f"output folder {p} is not writable")
            break
    return folder


def _inputs(args) -> list[str]:
    """The files a command reads (its positional checkpoint(s) or file)."""
    given = getattr(args, "checkpoints", None) or [getattr(args, "checkpoint", None) or getattr(args, "file", None)]
    return [path for path in given if path]


def _check_inputs(args) -> None:
    """A missing input is the first thing to say (before anything about the output folder)."""
    for path in _inputs(args):
        if not Path(path).exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist")


def _check_previous_results(args, folder: Path) -> None:
    """One rule for every command: a folder holding another run's results is refused unless --overwrite;
    resumable commands (demo, reproduce, train --resume) continue their own. A single-file command (export,
    import) refuses an existing output file unless --overwrite, and never writes over one of its inputs."""
    if getattr(COMMANDS[args.command], "SINGLE_FILE", False):
        out = Path(args.out)
        for given in _inputs(args):
            if out.exists() and out.resolve() == Path(given).resolve():
                raise ValueError(f"--out {out} is the input file itself; choose another --out")
        if out.exists() and not args.overwrite:
            raise ValueError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
        return
    marker = folder / RESULT_MARKER
    held = [name for name in RESULT_FILES if (folder / name).is_file()]
    if not held or args.overwrite:
        return
    try:
        previous = json.loads(marker.read_text()).get("command") if marker.is_file() else None
    except (OSError, ValueError, AttributeError):
        previous = None
    resumable = getattr(COMMANDS[args.command], "RESUMABLE", False) or getattr(args, "resume", False)
    if previous == args.command and (resumable or held == [RESULT_MARKER]):
        return  # its own run to continue, or one that stopped before it saved anything: run it again
    what = f"a '{previous}' run" if previous else "another run"
    raise ValueError(f"{folder} already holds the results of {what}; pass --overwrite to replace them or choose "
                     "another --out")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 1000 else text[:997] + "..."


def _close_bars() -> None:
    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()


def _remove_if_empty(folder: Path | None) -> None:
    """A failed command leaves no empty output folder behind (checkpoints it made are kept)."""
    if folder is not None and folder.is_dir() and not any(p.name != OutputLock.NAME for p in folder.iterdir()):
        (folder / OutputLock.NAME).unlink(missing_ok=True)
        folder.rmdir()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``robprune`` command; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    created: Path | None = None
    completed = False
    try:
        check_env()
        args = parse_with_config(build_parser(), list(sys.argv[1:] if argv is None else argv))
        args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded with the results
        default_out = getattr(COMMANDS[args.command], "default_out", None)
        if default_out is not None and getattr(args, "out", "") is None:
            args.out = default_out(args)
        _check_inputs(args)
        folder = _check_out(args)
        created = folder if not folder.exists() else None
        if args.command == "reproduce" and getattr(args, "report_only", False):
            COMMANDS[args.command].run(args)
            return 0
        args.out_dir = folder
        launcher = getattr(COMMANDS[args.command], "launch_if_asked", None)
        if launcher is not None and launcher(args):  # --nproc: the ranks it starts lock the folder, not the launcher
            completed = True
            return 0
        if rank_from_env() > 0:  # under torchrun only rank 0 writes, so only rank 0 holds the folder
            COMMANDS[args.command].run(args)
        else:
            shared = bool(getattr(args, "share", False))
            with OutputLock(folder, shared=shared):
                _check_previous_results(args, folder)
                single = getattr(COMMANDS[args.command], "SINGLE_FILE", False)
                remove_stale_temporaries(folder, older_than_s=3600.0 if shared else 0.0,
                                         name=Path(args.out).name if single else None)
                COMMANDS[args.command].run(args)
        completed = True
    except SystemExit as exit_:  # --help and --version
        return int(exit_.code or 0)
    except KeyboardInterrupt:
        _close_bars()
        say_error("robprune: interrupted; finished units and checkpoints are kept")
        return 130
    except Exception as err:  # every error, whatever a file's content raised, becomes one line
        _close_bars()
        if rank_from_env() == 0:
            _remove_if_empty(created)
        if os.environ.get("ROBPRUNE_DEBUG"):
            raise
        known = isinstance(err, (UsageError, ValueError, TypeError, OSError, RuntimeError, json.JSONDecodeError))
        prefix = "" if known else f"{type(err).__name__}: "
        rank = f" (rank {rank_from_env()})" if rank_from_env() else ""
        say_error(f"robprune: error{rank}: {prefix}{_one_line(err)}")
        return 2
    finally:
        teardown(completed)
    return 0


def entry() -> None:
    """The process entry point of both ``robprune`` and ``python -m robprune``: exit with main()'s code.

    Under torchrun, main() has left the process group and closed every file; the process then exits without the
    interpreter's finalisation, which keeps the C++ destructors of the communication library (gloo's threads) from
    running against a torn-down interpreter: that aborted a rank at exit in CI ("terminate called without an
    active exception")."""
    code = main()
    if launched_by_torchrun():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


__all__ = ["COMMANDS", "Progress", "build_parser", "entry", "main"]
