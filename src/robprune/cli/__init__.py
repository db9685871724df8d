"""Command-line interface: the only package that parses arguments and talks to the terminal."""

from .common import Progress, parse_eps_list
from .main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "Progress", "build_parser", "main", "parse_eps_list"]
