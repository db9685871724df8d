"""What every command shares: the argument parser, value types, the device, progress bars, the output lock."""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch
from tqdm import tqdm

from .. import __version__


def say_error(line: str) -> None:
    """Write one line to stderr in one write, so the lines of several ranks sharing a pipe never interleave.

    print() writes the text and its newline separately, and Python's stderr passes each write straight through."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class UsageError(Exception):
    """Bad command-line usage, reported as one line and exit code 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and shows every option's default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is not argparse.SUPPRESS and action.option_strings and "default:" not in text \
                and not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
                                            argparse._VersionAction)):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --n-image must not silently mean --n-images
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(f"{message} (see '{self.prog} --help')")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def amount(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"amount must be in [0, 1), got {value}")
    return value


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def pixel_radius(text: str) -> float:
    """A radius or step in units of 1/255 ('8' or '8/255' -> 8/255); an L2 radius may exceed the pixel range."""
    return non_negative(text.split("/")[0]) / (non_negative(text.split("/")[1]) if "/" in text else 255.0)


def parse_eps_list(text: str, unit: str = "255") -> list[float]:
    """'1,2,4,8' (units of 1/255) or '8/255,0.05' -> pixel-unit floats; 'none' -> clean accuracy only.

    With ``unit="fraction"`` plain numbers are fractions of the pixel range (0.031).
    """
    if text.strip().lower() == "none":
        return []
    values, plain = [], []
    for item in text.split(","):
        item = item.strip()
        try:
            num, _, den = item.partition("/")
            value = float(num) / (float(den) if den else (1.0 if unit == "fraction" else 255.0))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"eps must be numbers like 1,2,4,8 (x/255), got {item!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"eps must be >= 0, got {item!r}")
        if value > 1:
            hint = " (with --eps-unit fraction, 8/255 is 0.031)" if unit == "fraction" else \
                " (eps is in units of 1/255: at most 255)"
            raise ValueError(f"eps {item} is larger than the whole pixel range{hint}")
        values.append(value)
        plain.append(not den)
    # the unit check costs nothing, so it runs whatever --no-checks says: "0.03" in units of 1/255 is almost
    # always a fraction meant as 8/255; written as 0.03/255 it is taken as meant
    if unit == "255" and values and all(plain) and 0 < max(values) < 0.5 / 255:
        raise ValueError(f"eps {text} is in units of 1/255, so every value is below half a grey level: for 8/255 "
                         "write 8, or pass --eps-unit fraction; write e.g. 0.03/255 if you mean it")
    return values


def device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available")
    return dev


class Progress:
    """Turns library progress events into tqdm bars (images/s, smoothed ETA) and log lines on stderr."""

    def __init__(self, live: bool | None = None) -> None:
        self.bar: tqdm | None = None
        self.run_start: float | None = None
        self.images_done = 0
        # bars only on a terminal: redirected to a file (nohup, make demo > log) a bar writes a frame per refresh,
        # megabytes of carriage returns; there each epoch and each finished attack is one line instead
        self.live = sys.stderr.isatty() if live is None else live
        self.eval_start: float | None = None

    def __call__(self, event: dict) -> None:
        kind = event["kind"]
        if kind == "step":
            if self.bar is None:
                self.bar = tqdm(total=event["steps"], desc=f"epoch {event['epoch']}/{event.get('epochs', '?')}",
                                leave=False, file=sys.stderr, dynamic_ncols=True, unit="step", smoothing=0.05,
                                disable=not self.live)
            self.bar.update(1)
            if self.run_start is None:  # the rate counts from the end of the first step, never from ~0 s
                self.run_start = time.perf_counter()
            else:
                self.images_done += event.get("images", 0)
            elapsed = time.perf_counter() - (self.run_start or time.perf_counter())
            rate = self.images_done / max(elapsed, 1e-9)
            epochs_left = event.get("epochs", event["epoch"]) - event["epoch"]
            left = epochs_left * event["steps"] + event["steps"] - event["step"]
            run_left = left * event.get("images", 0) / max(rate, 1e-9)
            self.bar.set_postfix(loss=f"{event['loss']:.3f}", img_s=f"{rate:.0f}",
                                 run_eta=time.strftime("%H:%M:%S", time.gmtime(run_left)), refresh=False)
        elif kind == "epoch":
            self.close()
            adv = f"  adv {100 * event['train_adv_acc']:.2f}%" if "train_adv_acc" in event else ""
            guard = f"  guard PGD {100 * event['guard_pgd_acc']:.1f}%" if "guard_pgd_acc" in event else ""
            tqdm.write(f"  epoch {event['epoch']}: loss {event['train_loss']:.4f}  "
                       f"train {100 * event['train_acc']:.2f}%{adv}  test {100 * event['test_acc']:.2f}%{guard}  "
                       f"sparsity {100 * event['sparsity']:.1f}%"
                       f"  {event['images_per_s']:.0f} img/s", file=sys.stderr)
        elif kind == "eval":
            if self.bar is None:
                self.eval_start = time.perf_counter()
                self.bar = tqdm(total=event["total"], desc=f"attack {event['name']}", leave=False,
                                file=sys.stderr, dynamic_ncols=True, unit="img", smoothing=0.05,
                                disable=not self.live)
            self.bar.update(event["done"] - self.bar.n)  # update, not n =: tqdm then measures the rate
            self.bar.refresh()  # batches a resumed unit had saved arrive at once: show them, not 0%, until the next
            if event["done"] >= event["total"]:
                self.close()
                if not self.live:
                    tqdm.write(f"  attack {event['name']}: {event['total']} done in "
                               f"{time.perf_counter() - self.eval_start:.1f} s", file=sys.stderr)
        elif kind in ("unit", "note"):
            self.close()
            text = f"[{event['status']}] {event['name']}" if kind == "unit" else event["text"]
            tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def resolved(args: argparse.Namespace) -> dict:
    """The command line as run, for the config.json written beside every result."""
    d = {k: v for k, v in vars(args).items() if k not in ("func", "argv")}
    return {"robprune_version": __version__, "command": args.command, "argv": getattr(args, "argv", None), "args": d}


def factory_arch(args: argparse.Namespace) -> str | None:
    """``--arch`` when it names a package.module:factory to allow importing on load, else None."""
    arch = getattr(args, "arch", None)
    return arch if arch and ":" in arch else None


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
