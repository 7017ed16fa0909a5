"""The ``neuron-importance`` command.

Each subcommand lives in its own module under :mod:`neuron_importance.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (``args -> exit code``) as a
default. To add a subcommand, add its module name to :data:`SUBCOMMANDS`.

User errors (a missing file, an unknown method, bad FASTA, a model that does not fit the inputs)
are printed as one line on stderr with exit code 2; set ``NEURON_IMPORTANCE_DEBUG=1`` (or pass
``--debug``) to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

import neuron_importance

PROG = "neuron-importance"

#: subcommand modules, in the order they are listed by ``--help``
SUBCOMMANDS: tuple[str, ...] = ("explain", "attribute", "demo", "reproduce")

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Exact DeepLIFT, Integrated Gradients and neuron importance for PyTorch.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {neuron_importance.__version__}"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one-line errors"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"neuron_importance.cli.{name}").register(subparsers)
    return parser


def _is_user_error(err: BaseException) -> bool:
    """Errors that describe bad input rather than a bug: shown as one line, exit code 2."""
    if isinstance(err, (ValueError, FileNotFoundError, IsADirectoryError, PermissionError)):
        return True
    # neuron_importance's own exceptions (AttributionError, UnsupportedOperationError, ...)
    return type(err).__module__.startswith("neuron_importance") and isinstance(err, Exception)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, FileNotFoundError) and err.filename and "not found" not in text:
        text = f"file not found: {err.filename}"
    return text or type(err).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{PROG}: warning: {category.__name__}: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 2 user error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as stop:  # --help, --version, or an argparse usage error
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    debug = args.debug or os.environ.get("NEURON_IMPORTANCE_DEBUG", "") not in ("", "0")
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except Exception as err:
            if debug or not _is_user_error(err):
                raise
            print(f"{PROG} {args.command}: error: {_one_line(err)}", file=sys.stderr)
            return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
