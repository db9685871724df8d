"""The study reports written as Jinja2 templates (reporting/templates/*.md.j2)."""

from __future__ import annotations

from pathlib import Path

import jinja2

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                          keep_trailing_newline=True, autoescape=False)


def render_template(name: str, **context) -> str:
    """``templates/name`` rendered with ``context`` (an unknown variable is an error, never an empty cell)."""
    return _ENV.get_template(name).render(**context)
