"""The ``adambnn`` command line: the parser, and the one place where errors become messages.

The leaf of the package: nothing in the library imports it. One module per command group
(`train`, `deploy`, `data`, `reports`, `demo`, `study`) adds its subcommands and their handlers;
a handler returns the exit status. `main` maps errors to messages and exit statuses, for every
command alike:

- `adambnn_larq.errors.AdambnnError` (bad input, a missing file, a refused action): the
  domain errors, ``adambnn COMMAND: error: MESSAGE`` on stderr, status 2, no traceback;
- Ctrl-C: ``adambnn COMMAND: interrupted``, status 130;
- usage errors: argparse's message, status 2;
- anything else is a bug (even a ``ValueError``, which TensorFlow and numpy raise for their
  own reasons): its traceback, then ``adambnn COMMAND: internal error: ...`` saying so, status
  1. The traceback is always printed, with or without ``--verbose``: a run may have trained
  for hours before it, and a bug report needs it without a rerun.

Lazy imports: the handlers import the library (TensorFlow, larq, LCE, numpy) only when a
command runs, so that ``adambnn --help`` and usage errors stay fast (0.09 s against seconds for
TensorFlow alone: docs/results/cli-startup/README.md).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from adambnn_larq import logs

# The command groups import only argparse, the configuration's choices and the errors.
from adambnn_larq.cli import data, demo, deploy, reports, study, train
from adambnn_larq.cli.arguments import CommandError
from adambnn_larq.errors import AdambnnError

__all__ = ["CommandError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adambnn",
        description="AdamBNN in Larq: train ReActNet-A with two-step Adam, convert with LCE, "
        "verify and benchmark.",
    )
    parser.add_argument(
        "--verbose",
        dest="tf_logs",
        action="store_true",
        help="also show TensorFlow's, absl's and TFLite's own log lines (before COMMAND)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    train.add_commands(subparsers)
    deploy.add_import_command(subparsers)
    data.add_commands(subparsers)
    deploy.add_commands(subparsers)
    reports.add_commands(subparsers)
    demo.add_commands(subparsers)
    study.add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``adambnn`` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (`train RECIPE --smoke key=value`).
    if (
        extra
        and hasattr(args, "overrides")
        and all("=" in e and not e.startswith("-") for e in extra)
    ):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # Before any command imports TensorFlow: its C++ log level is read when it loads.
    logs.configure(verbose=args.tf_logs)
    try:
        return args.func(args)
    except AdambnnError as error:
        print(f"adambnn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"adambnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: shown in full, never as a user's mistake
        traceback.print_exc(file=sys.stderr)
        first = str(error).strip().splitlines()
        print(
            f"adambnn {args.command}: internal error: {type(error).__name__}"
            + (f": {first[0]}" if first else "")
            + " (a bug, not your input: please report it with the traceback above)",
            file=sys.stderr,
        )
        return 1
