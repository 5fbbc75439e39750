"""The musicid command line: thin commands over the library; heavy imports happen inside them.

One module per group of commands (index, use, evaluation), what they share in common.py."""

from __future__ import annotations

import sys

from . import evaluation, index, use  # noqa: F401  (each registers its commands on the apps)
from .common import app

__all__ = ["app", "main", "optional_values"]


def optional_values(argv: list[str], options: tuple[str, ...] = ("--ray",), default: str = "local") -> list[str]:
    """Let an option take an optional value, which typer cannot express: `--ray` alone (last, or
    followed by another option) means `--ray local`."""
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg in options and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append(default)
    return out


def main() -> None:
    app(args=optional_values(sys.argv[1:]))


if __name__ == "__main__":
    main()
