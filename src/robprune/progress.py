"""Progress events of long work: dicts handed to a callback (the CLI draws them; the library never prints)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[dict], None]


def emit(progress: Progress | None, **event) -> None:
    if progress is not None:
        progress(event)


def progress_counter(progress: Progress | None, name: str, total: int) -> Callable[[int], None]:
    """A callback that adds up the images an attack loop reports and emits an "eval" event with the total."""
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        emit(progress, kind="eval", name=name, done=done, total=total)

    return tick
