"""The ``mbrnn`` command line: ``mbrnn plan | train | evaluate | sample``.

Each subcommand lives in its own module, as a function that adds its options to a
subparser and a handler ``run(args) -> int``; :func:`build_parser` registers them with
plain ``add_parser`` calls. :func:`main` dispatches and turns user errors
(:class:`CommandError`) into one-line messages (``mbrnn <command>: error: ...``, exit
status 2) without a traceback. The handlers import torch, the parser does not, so
``mbrnn plan`` stays light.

Run it as ``mbrnn``, ``python -m mbrnn`` or ``torchrun -m mbrnn train ...``.

Example::

    $ mbrnn plan --seq-len 100000 --state-size 262144 --internal-size 1048576 --budget 2GiB
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import plan, zoo
from .errors import EXIT_FAILURE as EXIT_FAILURE
from .errors import EXIT_USAGE as EXIT_USAGE
from .errors import CommandError as CommandError
from .plan import PlanSummary as PlanSummary

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "CommandError", "PlanSummary", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``mbrnn`` parser; each subcommand's handler is its ``run`` default."""
    parser = argparse.ArgumentParser(
        prog="mbrnn",
        description="Memory-efficient backpropagation through time (Gruslys et al., 2016).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    about = "plan memory-efficient BPTT for a recurrence and a memory budget"
    p = sub.add_parser("plan", help=about, description=about)
    plan.configure(p)
    p.set_defaults(run=plan.run)

    about = "train a zoo model (language model or sequence classifier)"
    p = sub.add_parser("train", help=about, description=about)
    zoo.configure_train(p)
    p.set_defaults(run=zoo.run_train)

    about = "evaluate a zoo model, a model folder or a Hub model on a data split"
    p = sub.add_parser("evaluate", help=about, description=about)
    zoo.configure_evaluate(p)
    p.set_defaults(run=zoo.run_evaluate)

    about = "sample text from a language model"
    p = sub.add_parser("sample", help=about, description=about)
    zoo.configure_sample(p)
    p.set_defaults(run=zoo.run_sample)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mbrnn`` command line on ``argv`` (default: ``sys.argv[1:]``); returns the
    exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.run(args)
    except CommandError as exc:
        print(f"mbrnn {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
