"""Stage 10, the musicid command line: thin commands over the library (any stage may be imported;
none imports this); heavy imports happen inside the commands.

One module per group of commands: `index_commands` (index build, add, remove, info), `use_commands`
(query, report, render, serve, corpus export), `eval_commands` (eval and its protocols, embedder train
and info); what they share (options, errors, progress bars) in `common`, the tables in `display`."""

from __future__ import annotations

import sys

import typer

from . import eval_commands, index_commands, use_commands  # noqa: F401  (each registers its commands on the apps)
from .common import app, err

UsageError: type[Exception] = typer.BadParameter.__mro__[1]  # click's UsageError, as typer vendors it

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


VALUE_ERROR_PREFIX = "Value error, "  # what typer >= 0.20's pydantic coercion puts before a choice's message


def main() -> None:
    """The console script: the app, with usage errors shown as click shows them but without the
    "Value error, " that typer's coercion prefixes to a bad choice ("--classifier: 'foo' is not one
    of 'auto', ..."); exit codes as click's (2 for usage)."""
    try:
        code = app(args=optional_values(sys.argv[1:]), standalone_mode=False)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except UsageError as e:
        e.message = e.message.replace(VALUE_ERROR_PREFIX, "")  # type: ignore[attr-defined]
        e.show()  # type: ignore[attr-defined]
        sys.exit(e.exit_code)  # type: ignore[attr-defined]
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
