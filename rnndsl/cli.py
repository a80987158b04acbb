"""The `rnndsl` command: takes command-line arguments, gives reports, drawings and exit codes.

Each subcommand is one function `cmd_NAME(args) -> int`, registered in `COMMANDS`. Spec errors are
printed as diagnostics (exit 1); no user mistake ends in a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rnndsl._version import __version__
from rnndsl.draw import MAX_DRAW_STEPS, draw
from rnndsl.frontend import sizes
from rnndsl.frontend.check import check_file
from rnndsl.frontend.compose import Model
from rnndsl.frontend.load import load, read_spec
from rnndsl.frontend.parse import parse
from rnndsl.graphs.folded import folded, loops
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Source, SpecError
from rnndsl.lang.ir import Network
from rnndsl.training.options import add_commands as add_training_commands

__all__ = ["main", "build_parser"]


def _summary(net: Network) -> str:
    g = folded(net)
    loop_text = (
        "; ".join(
            f"{{{', '.join(names)}}} (delay {', '.join(f't{-d:+d}' for d in delays)})" for names, delays in loops(g)
        )
        or "none"
    )
    ins = ", ".join(
        f"{n.name}: {n.input_kind} {n.size}" + (f" = {s.show(n.feed)}" if n.feed else "") for n in net.inputs
    )
    outs = ", ".join(o.name + (" last" if o.last else "") for o in net.outputs)
    return (
        f"  network {net.name}: {len(net.nodes)} nodes, {net.parameter_count():,} parameters\n"
        f"    inputs: {ins}\n    outputs: {outs}\n    loops: {loop_text}"
    )


def _model_summary(model: Model) -> str:
    runs = ", ".join(
        f"{i.name} = {i.network.name}"
        + ("(" + ", ".join(f"{a} = {src}.{out}" for a, src, out in i.bindings) + ")" if i.bindings else "")
        for i in model.instances
    )
    ins = ", ".join(f"{n.name}: {n.input_kind} {n.size} ({i.name})" for i, n in model.inputs)
    outs = ", ".join(f"{o.name} ({i.name})" for i, o in model.outputs)
    return f"  model {model.name}: {runs}\n    inputs: {ins}\n    outputs: {outs}"


def _generic_summary(decl: s.NetworkDecl, used: list[dict[str, int]]) -> str:
    head = f"  network {decl.name}({', '.join(n for n, _ in decl.sizes)}): generic"
    if not used:
        return f"{head}, not used by any network here: only its declaration is checked"
    return f"{head}, checked where it is used, with " + "; ".join(
        ", ".join(f"{n} = {v}" for n, v in binding.items()) for binding in used
    )


def cmd_check(args: argparse.Namespace) -> int:
    """Check spec files; print a summary per network, or every error found."""
    status = 0
    for path in _spec_files(args.files):
        if Path(path).is_dir():
            print(f"{path}: error: a folder with no .rnn file under it", file=sys.stderr)
            status = 1
            continue
        try:
            text, name = read_spec(Path(path))
            program = parse(text, name)
            nets, models = check_file(program, Source(text, name))
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
        checked, used = {n.name: n for n in nets}, sizes.used_with(program)
        for decl in program.networks:  # in the file's order, generic networks among the others
            print(_generic_summary(decl, used[decl.name]) if decl.generic else _summary(checked[decl.name]))
        for model in models:
            print(_model_summary(model))
    return status


def _spec_files(paths: Sequence[str]) -> list[str]:
    """The files to check: each FILE as given, each folder as every .rnn file under it, in sorted order (an
    empty folder stays itself, and is reported as such)."""
    out: list[str] = []
    for path in paths:
        found = sorted(str(p) for p in Path(path).rglob("*.rnn")) if Path(path).is_dir() else []
        out += found or [path]
    return out


def _draw_error(err: Exception) -> int:
    text = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) and err.filename and err.strerror else str(err)
    # check.py words the choice of network for the Python API; say it the command line's way
    print(f"rnndsl draw: error: {text.replace('network=NAME', '--network NAME')}", file=sys.stderr)
    return 1


def cmd_draw(args: argparse.Namespace) -> int:
    """Draw one network, folded or unrolled, to a .dot, .svg or .png file."""
    try:
        net = load(Path(args.file), args.network)  # a Path: the file is read even without a .rnn suffix
    except SpecError as err:
        print(err, file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        return _draw_error(err)
    for warning in net.warnings:
        print(warning.format(), file=sys.stderr)
    try:
        path = draw(net, args.output, unroll=args.unroll)
    except (OSError, ValueError, ImportError) as err:
        return _draw_error(err)
    print(f"wrote {path}")
    return 0


def _training(name: str) -> Callable[[argparse.Namespace], int]:
    """A command of rnndsl.training.commands, imported when it runs: it needs torch, `check` does not."""

    def run(args: argparse.Namespace) -> int:
        from rnndsl.training import commands

        command: Callable[[argparse.Namespace], int] = getattr(commands, name)
        return command(args)

    return run


def cmd_export(args: argparse.Namespace) -> int:
    """Write a spec's network (or model), or a checkpoint's trained one, as an ONNX file."""
    try:
        net, trained = _exported(args)
        options = {"lengths": args.lengths, "greedy": args.greedy, "stop": args.stop}
        if args.state:
            if "state" not in inspect.signature(net.to_onnx).parameters:  # a model's export carries no state
                raise ValueError(
                    f"--state is for one network's graph; `{net.ir.name}` is a model (an encoder-decoder), whose "
                    "export runs its networks whole: leave --state out"
                )
            options["state"] = True
        path = net.to_onnx(args.output, **options)
        if not trained:
            print(
                f"rnndsl export: warning: {args.source} is a spec: the file holds freshly initialised weights "
                "(export a checkpoint of `rnndsl train` for trained ones)",
                file=sys.stderr,
            )
    except SpecError as err:
        print(err, file=sys.stderr)
        return 1
    except (OSError, ValueError, ImportError, TypeError) as err:
        text = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) and err.filename else str(err)
        print(f"rnndsl export: error: {text.replace('network=NAME', '--network NAME')}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def _exported(args: argparse.Namespace) -> tuple[Any, bool]:
    """The module to export and whether its weights are trained: a checkpoint's (a file ending in .pt), or
    the spec's network (FILE or FILE:NETWORK) with fresh ones."""
    if args.stop is not None and not args.greedy:
        raise ValueError("--stop ends greedy generation: give --greedy too")
    if args.state and args.greedy:
        raise ValueError("--state is for the network's own graph, not for --greedy generation")
    if Path(args.source).suffix == ".pt":
        from rnndsl.training.checkpoint import load_model

        return load_model(args.source, network=args.network), True
    from rnndsl.runtime.build import compile as build
    from rnndsl.training.commands import spec_ref

    path, network = spec_ref(args.source, args.network)
    return build(Path(path), network), False


def _optional(module: str, name: str, extra: str) -> Callable[[argparse.Namespace], int]:
    """A command whose module needs an optional extra (pygls; starlette and uvicorn), imported when it runs:
    without the extra, one line says what to install."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        try:
            command: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), name)
        except ImportError as err:
            print(f"rnndsl {args.command}: error: needs {err.name}: pip install 'rnndsl[{extra}]'", file=sys.stderr)
            return 1
        return command(args)

    return run


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check": cmd_check,
    "draw": cmd_draw,
    "export": cmd_export,
    "train": _training("cmd_train"),
    "compare": _training("cmd_compare"),
    "tune": _training("cmd_tune"),
    "generate": _training("cmd_generate"),
    "evaluate": _training("cmd_evaluate"),
    "lsp": _optional("rnndsl.editor.lsp", "cmd_lsp", "editor"),
    "play": _optional("rnndsl.play.server", "cmd_play", "play"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnndsl",
        description="Declare recurrent networks as graphs with feedback edges; check, draw and run them.",
    )
    parser.add_argument("--version", action="version", version=f"rnndsl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "check",
        help="check .rnn files and summarise each network and model",
        description="Check .rnn files. Exit 0 when every file is correct, 1 otherwise; "
        "errors are printed as FILE:LINE:COL with the source line and a caret. A generic network "
        "(network Cell(H) { ... }) is checked where the file's networks use it, at the sizes they give.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="spec files, or folders: every .rnn file under them")
    _add_draw_command(sub)
    _add_more_commands(sub)
    return parser


def _add_draw_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "draw",
        help="draw a network's folded graph or unrolled DAG to .dot, .svg or .png",
        description="Draw one network: its folded graph (feedback edges dashed and labelled t-k "
        "or t+k), or with --unroll its DAG unrolled over STEPS steps, one column per "
        "step. The format follows OUT's suffix: .dot (Graphviz text, needs nothing), "
        ".svg or .png (need matplotlib: pip install 'rnndsl[plot]'). Exit 1 on errors.",
    )
    p.add_argument("file", metavar="FILE", help="spec file")
    p.add_argument("--network", "-n", metavar="NAME", help="the network to draw, when FILE holds several")
    p.add_argument(
        "--unroll",
        type=int,
        metavar="STEPS",
        help=f"draw the DAG unrolled over STEPS steps (1 to {MAX_DRAW_STEPS}) instead of the folded graph",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write: .dot, .svg or .png")


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a network (or model) as an ONNX file that onnxruntime runs at any length",
        description="Write one network or model as ONNX: its inputs and outputs named as the spec's, batch and "
        "time dynamic, each loop an ONNX Loop over time. SOURCE is a training checkpoint (a file ending in "
        ".pt: its trained weights) or a spec (FILE or FILE:NETWORK: freshly initialised weights, with a "
        "warning). Needs the onnx package (pip install 'rnndsl[onnx]'). Exit 1 on errors.",
    )
    p.add_argument("source", metavar="SPEC|CHECKPOINT", help="a spec file (or FILE:NETWORK), or a checkpoint .pt")
    p.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="the file to write")
    p.add_argument("--network", "-n", metavar="NAME", help="the network or model to export, when SPEC holds several")
    p.add_argument(
        "--lengths",
        action="store_true",
        help="add a lengths input (batch,) int64 for padded batches (a model: lengths.INSTANCE; a memory: "
        "lengths.MEMORY)",
    )
    p.add_argument(
        "--state", action="store_true", help="add the state: inputs state_in.NAME and outputs state_out.NAME"
    )
    p.add_argument(
        "--greedy",
        action="store_true",
        help="export greedy generation instead: the self-fed token input fed the argmax of its feed for `steps` "
        "(an input) tokens; outputs tokens (batch, steps) and lengths (batch,)",
    )
    p.add_argument("--stop", type=int, metavar="ID", help="with --greedy: the token that ends a row (0 for names, g2p)")


def _add_more_commands(sub: argparse._SubParsersAction) -> None:
    """Subcommands that live in their own modules register here."""
    add_training_commands(sub)  # train, compare, tune, generate, evaluate (rnndsl/training/options.py and commands.py)
    _add_export_command(sub)
    _add_editor_commands(sub)


def _add_editor_commands(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "lsp",
        help="run the language server (LSP on stdin and stdout) for editors",
        description="Run the .rnn language server on stdin and stdout until the editor ends it: the "
        "checker's errors and warnings as you type, hover (a node's kind, size, parameters, loop and "
        "delays; a use's inputs and outputs), go to definition (into blocks too), completion, document "
        "symbols and rename of a node. Point an editor's LSP client at the command `rnndsl lsp`; "
        "editors/vscode/README.md shows VS Code. Needs pip install 'rnndsl[editor]'.",
    )
    p = sub.add_parser(
        "play",
        help="open the playground: edit a spec, see its graphs, train it a little, in the browser",
        description="Serve the playground on 127.0.0.1 (this machine only) and open it in the browser: an "
        "editor with the checker's messages as you type, the folded graph and the unrolled DAG, the "
        "parameter count, the examples, and a Train button that trains the spec on a built-in task "
        "(digits, names) for a few hundred steps with its loss drawn live. The spec and the options are "
        "kept in the page's address, so a link reproduces it. Ctrl-C stops the server. "
        "Needs pip install 'rnndsl[play]'.",
    )
    p.add_argument(
        "--port", type=int, default=8765, metavar="P", help="the port on 127.0.0.1 (default 8765; 0: any free one)"
    )
    p.add_argument("--no-browser", action="store_true", help="only print the address; open no browser")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser, with its usage (the top level's would list commands only)
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # the reader went away (`rnndsl check ... | head`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
        return 1


if __name__ == "__main__":
    sys.exit(main())
