"""The `rnndsl` command: takes command-line arguments, gives reports, drawings and exit codes.

Each subcommand is one function `cmd_NAME(args) -> int`, registered in `COMMANDS`. Spec errors are
printed as diagnostics (exit 1); no user mistake ends in a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rnndsl import load_all
from rnndsl.errors import SpecError
from rnndsl.graph import folded, loops
from rnndsl.ir import Network

__all__ = ["main", "build_parser"]


def _summary(net: Network) -> str:
    g = folded(net)
    loop_text = "; ".join(
        f"{' -> '.join(names)} (delay {', '.join(f't{-d:+d}' for d in delays)})" for names, delays in loops(g)
    ) or "none"
    ins = ", ".join(f"{n.name}: {n.input_kind} {n.size}" for n in net.inputs)
    outs = ", ".join(o.name + (" last" if o.last else "") for o in net.outputs)
    return (f"  network {net.name}: {len(net.nodes)} nodes, {net.parameter_count():,} parameters\n"
            f"    inputs: {ins}\n    outputs: {outs}\n    loops: {loop_text}")


def cmd_check(args: argparse.Namespace) -> int:
    """Check spec files; print a summary per network, or every error found."""
    status = 0
    for path in args.files:
        try:
            nets = load_all(path)
        except SpecError as err:
            print(err, file=sys.stderr)
            status = 1
            continue
        except (OSError, ValueError) as err:
            print(f"{path}: error: {err}", file=sys.stderr)
            status = 1
            continue
        for net in nets:
            for warning in net.warnings:
                print(warning.format(), file=sys.stderr)
        print(f"{path}: ok")
        for net in nets:
            print(_summary(net))
    return status


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"check": cmd_check}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnndsl",
        description="Declare recurrent networks as graphs with feedback edges; check, draw and run them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("check", help="check .rnn files and summarise each network",
                       description="Check .rnn files. Exit 0 when every file is correct, 1 otherwise; "
                                   "errors are printed as FILE:LINE:COL with the source line and a caret.")
    p.add_argument("files", nargs="+", metavar="FILE", help="spec files")
    _add_more_commands(sub)
    return parser


def _add_more_commands(sub: argparse._SubParsersAction) -> None:
    """Subcommands that live in their own modules register here."""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
