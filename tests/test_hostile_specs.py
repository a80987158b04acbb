"""Hostile specs: the front end never evaluates spec text as Python, and limits fail early and clearly.

Four kinds of check:
- text that is Python, not .rnn (imports, attribute chains, dunders, eval/exec, lambdas, strings,
  backticks, f-strings, statements after ';', look-alike letters, control characters) is a SpecError
  pointing at the offending column; where the Python hides in a comment the spec is valid, and
  compiling, running and printing it must not run the payload (a sentinel file must not appear);
- node names that are Python keywords, builtins or names the generated code uses itself either run
  end to end (== the reference executor) or are a clear SpecError;
- the generated code of every example, and of the hostile names above, is parsed with `ast`: every
  name, attribute chain and string constant comes from a fixed vocabulary or is a sanitised node name
  (so no spec text reaches `exec` but as identifiers and float literals);
- limits (parameters, delays, nesting, file size) are SpecErrors naming what is too big, before any
  tensor is allocated.
"""

from __future__ import annotations

import ast
import io
import itertools
import math
import re
import tokenize
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import rnndsl
from rnndsl.backend import kernels
from rnndsl.backend.codegen import generate
from rnndsl.frontend.parse import MAX_EXPR_DEPTH, MAX_SPEC_BYTES
from rnndsl.runtime.feed import Feed
from rnndsl.runtime.reference import reference

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.rnn"))


def spec_error(text: str) -> rnndsl.SpecError:
    """The SpecError `text` raises; each diagnostic points inside the text and renders."""
    with pytest.raises(rnndsl.SpecError) as info:
        rnndsl.compile(text)
    lines = text.split("\n")  # as Lark counts lines
    for d in info.value.diagnostics:
        assert 1 <= d.line <= len(lines), d.format()
        assert 1 <= d.column <= len(lines[d.line - 1]) + 1, d.format()
        assert d.format().startswith(f"<string>:{d.line}:{d.column}: error: ")
    return info.value


def position(text: str, marker: str) -> tuple[int, int]:
    """1-based (line, column) of the first occurrence of `marker` in `text`."""
    before = text[: text.index(marker)]
    return before.count("\n") + 1, len(before) - before.rfind("\n")


# ---- Python in a spec is a SpecError at the offending column ----------------------------------------

HEAD = "network N { input x: 4\n"
HOSTILE = {  # id: (spec, the text the first diagnostic must point at, words its message must hold)
    "import-call": (HEAD + " h = __import__('os').system('true')\n output h }", "'", "unexpected character"),
    "import-as-function": (HEAD + " layer h: 3 <- __import__(x)\n output h }", "__import__", "unknown function"),
    "eval": (HEAD + " h = eval(x)\n output h }", "eval", "unknown function `eval`"),
    "exec-statement": (HEAD + " exec('import os')\n output x }", "(", "unexpected '('"),
    "getattr": (HEAD + " h = getattr(x, x)\n output h }", "getattr", "unknown function `getattr`"),
    "attribute": (HEAD + " h = x.__class__\n output h }", "x.__class__", "unknown name `x.__class__`"),
    "attribute-chain": (HEAD + " layer h: 3 <- x.__class__.__mro__\n output h }", "x.__class__", "unknown name"),
    "method-call": (HEAD + " h = x.numpy()\n output h }", "x.numpy", "unknown function `x.numpy`"),
    "dunder-input": ("network N { input __x__: 4\n output __x__ }", "input", "names may not start with '_'"),
    "dunder-layer": (HEAD + " layer __init__: 3 <- x\n output __init__ }", "layer", "names may not start with '_'"),
    "dunder-size": (
        "network C(__class__) { input x: 4\n output x }\n"
        "network N { input x: 4\n use c = C(__class__ = 4, x = x)\n output c.x }",
        "__class__",
        "names may not start with '_'",
    ),
    "call-as-size": ("network N(H) { input x: eval(H)\n output x }", "(H)\n", "unexpected '('"),
    "call-given-as-size": (
        "network C(H) { input x: H\n output x }\nnetwork N { input x: 4\n use c = C(H = eval(x), x = x)\n output c.x }",
        "eval",
        "`eval(x)` cannot stand in a size",
    ),
    "dunder-builtins": (HEAD + " __builtins__ = x\n output x }", "__builtins__", "names may not start with '_'"),
    "lambda": (HEAD + " h = lambda: x\n output h }", ": x", "unexpected ':'"),
    "string": (HEAD + " h = 'x'\n output h }", "'", "unexpected character"),
    "double-quoted": (HEAD + ' h = "x"\n output h }', '"', "unexpected character"),
    "triple-quoted": (HEAD + ' """\n import os\n """\n output x }', '"', "unexpected character"),
    "f-string": (HEAD + " h = f'{x}'\n output h }", "'", "unexpected character"),
    "backticks": (HEAD + " h = `x`\n output h }", "`", "unexpected character '`'"),
    "semicolon-import": ("network N { input x: 4; import os; output x }", "os", "unexpected 'os'"),
    "semicolon-call": ("network N { input x: 4; print(x); output x }", "(", "unexpected '('"),
    "subscript": (HEAD + " h = x[0]\n output h }", "0", "a delayed reference is written"),
    "slice": (HEAD + " h = x[:, 0]\n output h }", ":,", "unexpected ':'"),
    "power": (HEAD + " h = x ** x\n output h }", "* x", "unexpected '*'"),
    "keyword-argument": (HEAD + " h = tanh(x, out=x)\n output h }", "=x)", "unexpected '='"),
    "decorator": (HEAD + " @torch.jit.script\n output x }", "@", "unexpected character '@'"),
    "dict-literal": (HEAD + " h = {x: x}\n output h }", "{x", "unexpected '{'"),
    "cyrillic-x": ("network N { input \u0445: 4\n output \u0445 }", "\u0445", "unexpected character"),
    "greek-omicron": (
        "network N { input x: 4\n layer h: 3 <- x, h[t-1]\n output h\u03bf }",
        "\u03bf",
        "unexpected character",
    ),
    "fullwidth-letter": (HEAD + " h = \uff58\n output h }", "\uff58", "unexpected character"),
    "zero-width-space": (HEAD + " h = x\u200b\n output h }", "\u200b", "unexpected character"),
    "right-to-left-override": (HEAD + " h = x \u202e# comment\n output h }", "\u202e", "unexpected character"),
    "non-breaking-space": ("network N {\u00a0input x: 4\n output x }", "\u00a0", "unexpected character"),
    "null-byte": (HEAD + " h = x\x00\n output h }", "\x00", "unexpected character '\\x00'"),
    "null-byte-in-name": ("network N { input x\x00y: 4\n output x }", "\x00", "unexpected character"),
    "escape-sequence": (HEAD + " h = x\x1b[2J\n output h }", "\x1b", "unexpected character"),
    "backslash-continuation": (HEAD + " h = x \\\n + x\n output h }", "\\", "unexpected character"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_python_in_a_spec_is_a_spec_error(case: str) -> None:
    text, marker, words = HOSTILE[case]
    first = spec_error(text).diagnostics[0]
    assert (first.line, first.column) == position(text, marker), first.format()
    assert words in first.message, first.format()


def test_non_ascii_digits_are_refused() -> None:
    """Numbers are ASCII digits only: `٣` (Arabic-Indic three) or `٥` (five, which looks like `0`) is an
    unexpected character, not a number."""
    for text in ("network N { input x: \u0663\n output x }", "network N { input x: 3\n y = x * \u0665\n output y }"):
        err = spec_error(text)
        assert "unexpected character" in err.diagnostics[0].message


def test_unicode_look_alikes_and_control_characters_are_shown_escaped() -> None:
    """A character that looks like an ASCII one, or shows as nothing, is named by its escape."""
    assert "'\\u200b'" in spec_error(HOSTILE["zero-width-space"][0]).diagnostics[0].message
    assert "'\\x1b'" in spec_error(HOSTILE["escape-sequence"][0]).diagnostics[0].message


# ---- Python payloads never run ---------------------------------------------------------------------------


def payloads(sentinel: Path) -> list[str]:
    """Python that creates `sentinel` if anything ever evaluates it, in every position a spec has."""
    touch = f"__import__('pathlib').Path({str(sentinel)!r}).touch()"
    opened = f"open({str(sentinel)!r}, 'w').write('ran')"
    return [
        f"network N {{ input x: 4\n h = {touch}\n output h }}",
        f"network N {{ input x: 4\n layer h: 3 tanh <- x, {opened}\n output h }}",
        f"network N {{ input x: 4\n layer h: 3 init={touch} <- x\n output h }}",
        f"network N {{ input x: 4\n layer h: 3 {touch} <- x\n output h }}",
        f"network {touch} {{ input x: 4\n output x }}",
        f"network N {{ input x: 4\n init x = {touch}\n output x }}",
        f"network N {{ input x: 4\n output {touch} }}",
        f"network N {{ input x: 4\n use b = {touch}\n output x }}",
        f"network N {{ input x: 4; {touch}; output x }}",
        f"network N {{ input x: {touch}\n output x }}",
        f"network C(H) {{ input x: H * {touch}\n output x }}\nnetwork N {{ input x: 4\n use c = C(H = 4, x = x)\n"
        " output c.x }",
        f"network C(H) {{ input x: H\n output x }}\nnetwork N {{ input x: 4\n use c = C(H = {touch}, x = x)\n"
        " output c.x }",
        f"network C({touch}) {{ input x: 4\n output x }}",
        f"network N {{ input x: 4\n h = x[t-{touch}]\n output h }}",
        f"{touch}\nnetwork N {{ input x: 4\n output x }}",
    ]


def valid_with_payload_in_comments(sentinel: Path) -> str:
    """A valid spec whose comments hold Python that would create `sentinel`."""
    touch = f"__import__('pathlib').Path({str(sentinel)!r}).touch()"
    return (
        f"# {touch}\nnetwork N {{  # {touch}\n input x: 4  # exec({touch!r})\n"
        f" layer h: 3 tanh <- x, h[t-1]  # eval({touch!r})\n y = tanh(h) * 2 # {touch}\n"
        f" output y # ; {touch}\n}} # {touch}\n"
    )


def test_payloads_are_spec_errors_and_never_run(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    for text in payloads(sentinel):
        spec_error(text)
        with pytest.raises(rnndsl.SpecError):
            rnndsl.load_all(text)
        assert not sentinel.exists(), text


def test_payloads_in_comments_compile_run_and_never_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid spec with Python in its comments: check, compile, run (plain, lengths, guarded), print the code,
    draw; the payload never runs, and every source the runtime hands to `exec` passes the allowlist."""
    from rnndsl.draw import to_dot
    from rnndsl.runtime import network as runtime

    sentinel = tmp_path / "pwned"
    compiled: list[str] = []

    def spy(source: str, *args: object, **kwargs: object) -> object:
        compiled.append(source)
        return compile(source, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(runtime, "compile", spy, raising=False)  # shadows the builtin inside runtime only
    path = tmp_path / "commented.rnn"
    path.write_text(valid_with_payload_in_comments(sentinel), encoding="utf-8")
    for spec in (path, path.read_text(encoding="utf-8")):
        net = rnndsl.compile(spec)
        x = torch.randn(2, 3, 4)
        net(x)
        net(x, lengths=torch.tensor([3, 2]), check_finite=True)
        for lengths, grad in itertools.product((False, True), (False, True)):
            assert_generated_code_is_safe(net.code(lengths, grad=grad), net.network)
            if net.network.self_fed:
                assert_generated_code_is_safe(net.code(lengths, free=True, grad=grad), net.network)
        to_dot(net.graph)
        rnndsl.unroll(net, steps=3)
    assert compiled, "the runtime no longer calls compile(): update this spy"
    for source in compiled:
        assert_generated_code_is_safe(source, net.network)
    assert not sentinel.exists()


@pytest.mark.parametrize("name", ["examples/jordan.rn", "examples/JORDAN.RNN", "no/such.txt"])
def test_a_mistyped_path_is_said_to_be_missing_not_parsed_as_a_spec(name: str) -> None:
    """One line without a brace cannot be a spec (every network has braces): a path, if it looks like one."""
    with pytest.raises(FileNotFoundError, match=f"no spec file at {name}"):
        rnndsl.compile(name)


def test_a_folder_is_not_a_spec(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match=f"{tmp_path} is a folder, not a spec file"):
        rnndsl.compile(str(tmp_path))


def test_a_path_that_looks_like_python_is_only_a_path(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    name = f"__import__('pathlib').Path({str(sentinel)!r}).touch().rnn"
    with pytest.raises(FileNotFoundError, match="no spec file at"):
        rnndsl.compile(name)
    assert not sentinel.exists()


# ---- the generated code holds only the compiler's vocabulary and sanitised node names ----------------------

MODULES = {"torch": torch, "F": F, "K": kernels, "math": math}
BUILTINS = {"range", "float"}
ARGUMENTS = {"P", "X", "I", "H", "B", "T", "lengths", "train", "watch", "feed"}
FEED_METHODS = {"plan", "pick", "whole", "sample", "sample_logits", "record"}  # rnndsl.feed.Feed's, for free runs
# _t: the step index, _s__t: its steps in a loop
# _J: what the module puts beside the code, each fused cell's weights as views of one buffer (`K.flat`)
FIXED_LOCALS = {"forward", "t", "values", "state", "valid", "_acc", "_valid_s", "_t", "_s__t", "_J"}
FIXED_STRINGS = {"__like__", "inf", "-inf", "nan", "lstm", "gru", "rnn_tanh", "rnn_relu"}
# a loop with a generated backward (rnndsl.loop_backward): its two functions, their context and temporaries
LOOP_FUNCTION = re.compile(r"_[LN]\d+_(forward|backward)")
# ... and a loop with native steps (rnndsl.native_step): the C source `_S<n>`, its value buffers `_ws<n>`, the step
# functions, their table
TEMPORARY = re.compile(r"_[LN]\d+_(forward|backward)|_S\d+|_ws\d+|_(b|go|Xs|a)\d+|_s|ctx|_fns|_fw|_bw|_tab|_at|_nt|_R_")
LAMBDA_ARGUMENTS = {"_x", "_a", "_b"}  # `K.vjp(lambda _x: F.gelu(_x), ...)`: ops differentiated by autograd
CTX_ATTRIBUTES = {
    "lists",
    "meta",
    "records",
    "saved_tensors",
    "save_for_backward",
    "needs_input_grad",
    "mark_non_differentiable",
}
NODE_TYPES = {
    ast.Lambda,
    ast.BoolOp,
    ast.Or,
    ast.Module,
    ast.FunctionDef,
    ast.arguments,
    ast.arg,
    ast.Assign,
    ast.For,
    ast.If,
    ast.IfExp,
    ast.Expr,
    ast.Return,
    ast.Call,
    ast.Attribute,
    ast.Name,
    ast.Constant,
    ast.Subscript,
    ast.Slice,
    ast.BinOp,
    ast.UnaryOp,
    ast.Tuple,
    ast.List,
    ast.Dict,
    ast.keyword,
    ast.Load,
    ast.Store,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.USub,
    ast.Compare,
    ast.Lt,
    ast.GtE,
    ast.Eq,
    ast.Mod,
}
# `_r1_h`, `_W0_h`, `_s__tm1_h` (the steps of `_tm1_h`): the compiler's temporaries
PREFIXES = re.compile(r"(?:__?[A-Za-z]+\d*)+")
COMMENT = re.compile(r"#[ -~]*")  # printable ASCII: network and node names, the compiler's words


def _chain(node: ast.Attribute) -> list[str]:
    """`torch.ops.aten.tanh_backward` as ["torch", "ops", "aten", "tanh_backward"]; a root that is not a name
    (a call, a subscript) gives "" first."""
    parts = [node.attr]
    value = node.value
    while isinstance(value, ast.Attribute):
        parts.append(value.attr)
        value = value.value
    parts.append(value.id if isinstance(value, ast.Name) else "")
    return parts[::-1]


def sanitised(names: set[str]) -> set[str]:
    """What a node name may become in code: dots to `__`, and a trailing `__` where it clashes."""
    bases = {n.replace(".", "__") for n in names}
    return bases | {b + "__" for b in bases}


def is_node_local(name: str, nodes: set[str]) -> bool:
    if name in nodes:
        return True
    return any(name.endswith("_" + v) and PREFIXES.fullmatch(name[: -len(v) - 1]) for v in nodes)


def assert_generated_code_is_safe(source: str, network: rnndsl.Network) -> None:
    """Every AST node type, name, attribute chain, call and string constant is the compiler's own or
    a sanitised node name; comments are printable ASCII (no spec text can end a comment line)."""
    names = {n.name for n in network.nodes}
    nodes = sanitised(names)
    tree = ast.parse(source)
    assigns = [f for f in tree.body if isinstance(f, ast.Assign)]
    workspaces = [f for f in assigns if re.fullmatch(r"_ws\d+ = K\.Workspace\(\)", ast.unparse(f))]
    c_sources = [f for f in assigns if f not in workspaces]  # `_S0 = "..."`: a loop's C steps
    for c in c_sources:
        (target,) = c.targets
        assert isinstance(target, ast.Name) and re.fullmatch(r"_S\d+", target.id), ast.dump(c)
        assert isinstance(c.value, ast.Constant) and isinstance(c.value.value, str), ast.dump(c)
        assert_c_source_is_safe(c.value.value, nodes)
    functions = [f for f in tree.body if f not in assigns]
    assert all(type(f) is ast.FunctionDef for f in functions) and functions[0].name == "forward"  # type: ignore[attr-defined]
    assert all(LOOP_FUNCTION.fullmatch(f.name) for f in functions[1:])  # type: ignore[attr-defined]
    checked = {id(c.value) for c in c_sources} | {id(n) for w in workspaces for n in ast.walk(w)}
    for node in ast.walk(tree):
        if id(node) in checked:
            continue
        assert type(node) in NODE_TYPES, f"unexpected {type(node).__name__} in:\n{source}"
        if isinstance(node, ast.Name):
            ok = node.id in MODULES or node.id in BUILTINS or node.id in ARGUMENTS or node.id in FIXED_LOCALS
            ok = ok or bool(TEMPORARY.fullmatch(node.id)) or node.id in LAMBDA_ARGUMENTS
            assert ok or is_node_local(node.id, nodes), f"name `{node.id}` in:\n{source}"
            assert node.id not in MODULES or isinstance(node.ctx, ast.Load), f"`{node.id}` rebound in:\n{source}"
        elif isinstance(node, ast.Attribute):
            chain = _chain(node)
            if chain[0] in MODULES:  # torch.tanh, torch.ops.aten.tanh_backward.grad_input: real, public names
                value: object = MODULES[chain[0]]
                for part in chain[1:]:
                    assert not part.startswith("_"), f"{'.'.join(chain)} in:\n{source}"
                    assert hasattr(value, part), f"{'.'.join(chain)} in:\n{source}"
                    value = getattr(value, part)
            elif isinstance(node.value, ast.Name) and node.value.id == "ctx":
                assert node.attr in CTX_ATTRIBUTES, f"ctx.{node.attr} in:\n{source}"
            elif len(chain) > 2 and chain[0] in MODULES:
                pass  # an inner link of a module's chain, checked whole above
            elif isinstance(node.value, ast.Name) and node.value.id == "feed":
                assert node.attr in FEED_METHODS and hasattr(Feed, node.attr), f"feed.{node.attr} in:\n{source}"
            elif isinstance(node.value, ast.Attribute) and _chain(node.value)[0] in MODULES:
                pass  # an inner link of a module's chain, checked whole where it ends
            elif isinstance(node.value, ast.Name) and node.value.id == "_J":
                assert node.attr == "get", f"_J.{node.attr} in:\n{source}"  # a dict, read by key
            elif isinstance(node.value, ast.Name) and re.fullmatch(r"_ws\d+", node.value.id):
                assert node.attr == "empty", f"{node.value.id}.{node.attr} in:\n{source}"  # K.Workspace's one method
            else:  # a method of a tensor or of the list of steps
                assert hasattr(torch.Tensor, node.attr) or node.attr in ("append", "reverse"), node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id in BUILTINS or node.func.id == "watch", f"call of `{node.func.id}` in:\n{source}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            ok = node.value in FIXED_STRINGS or node.value in names or is_node_local(node.value, nodes)
            keyed = node.value.removeprefix("attention:").removesuffix(":keep")  # an attention's weights, a mask
            ok = ok or (keyed != node.value and keyed in names)
            assert ok, f"string {node.value!r} in:\n{source}"
        elif isinstance(node, ast.Constant):
            assert node.value is None or isinstance(node.value, (bool, int, float)), repr(node.value)
        elif isinstance(node, ast.arg):
            ok = node.arg in ARGUMENTS or node.arg in LAMBDA_ARGUMENTS or node.arg in FIXED_LOCALS
            ok = ok or bool(TEMPORARY.fullmatch(node.arg))
            assert ok or is_node_local(node.arg, nodes), node.arg
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            assert COMMENT.fullmatch(tok.string), tok.string


# The C of a loop's native steps: C's words and the compiler's, names built on sanitised node names, numbers
C_WORDS = {
    "include", "math", "h", "pragma", "omp", "declare", "simd", "notinbranch", "extern", "float", "double",
    "define", "undef", "real", "void", "static", "long", "for", "restrict", "const", "s", "t", "T", "B", "b", "j",
    "p", "x", "expf", "tanhf", "logf", "sinf", "cosf", "sqrtf", "exp", "tanh", "log", "sin", "cos", "sqrt",
    "EXP", "TANH", "LOG", "SIN", "COS", "SQRT", "FABS", "__builtin_fabs", "__builtin_fabsf", "export",
    "INFINITY", "NAN", "ROW_STATS", "ROW_GRAD_STATS", "n", "i", "m", "v", "a", "c", "g", "mean", "rstd", "mg", "mgy",
    "ROW_SOFTMAX", "ROW_SOFTMAX_GRAD", "z", "y", "go", "mx", "se", "return", "ifdef", "endif", "RNNDSL_F32",
    "RNNDSL_F64", "reduction", "max", "ROWS", "parallel", "num_threads", "threads", "if", "schedule",
    "__attribute__", "noinline", "else",
}  # fmt: skip
C_NAME = re.compile(
    r"_N\d+_(fw|bw)(\d+|all)_f(32|64)(_\d+|_row)?|row_(grad_stats|stats|softmax|softmax_grad)_f(32|64)|(mu|rs|mg|my|scr|mx|se|sg)\d+|t\d+"
    r"|p_[a-z]+\d*_(?P<a>\w+)|x\d+_(?P<b>\w+)|[sq]_(?P<c>\w+)"
)
C_COMMENT = re.compile(r"/\* loop [\w, ]+: native steps \(rnndsl\.backend\.native_step\) \*/|// export \w+")
C_TOKEN = re.compile(r"\s+|[A-Za-z_]\w*|\d+(\.\d*)?([eE][-+]?\d+)?|[-+*/%=<>!?:;,()\[\]{}#.&|]+")


def assert_c_source_is_safe(source: str, nodes: set[str]) -> None:
    """A C source holds C's and the compiler's words, names built on node names, numbers and punctuation;
    its comments are the compiler's (`/* loop a, b: ... */`, `// export NAME`)."""
    for comment in re.findall(r"/\*.*?\*/|//[^\n]*", source, re.S):
        assert C_COMMENT.fullmatch(comment), comment
    code = re.sub(r"/\*.*?\*/|//[^\n]*", " ", source, flags=re.S)
    at = 0
    while at < len(code):
        token = C_TOKEN.match(code, at)
        assert token is not None, f"unexpected text {code[at : at + 20]!r} in:\n{source}"
        word = token.group()
        if word[0].isalpha() or word[0] == "_":
            named = C_NAME.fullmatch(word)
            node = named and (named.group("a") or named.group("b") or named.group("c"))
            ok = word in C_WORDS or (named is not None and (not node or is_node_local(node, nodes)))
            assert ok, f"C word `{word}` in:\n{source}"
        at = token.end()


def example_networks() -> list[tuple[Path, str]]:
    return [(p, net.name) for p in EXAMPLES for net in rnndsl.load_all(p)]


@pytest.mark.parametrize(("path", "network"), example_networks(), ids=lambda v: getattr(v, "stem", v))
def test_generated_code_of_every_example_is_only_identifiers_and_numbers(path: Path, network: str) -> None:
    for fuse_cells in (True, False):
        net = rnndsl.compile(path, network, fuse_cells=fuse_cells)
        for lengths, grad in itertools.product((False, True), (False, True)):
            assert_generated_code_is_safe(net.code(lengths, grad=grad), net.network)
            if net.network.self_fed:
                assert_generated_code_is_safe(net.code(lengths, free=True, grad=grad), net.network)
            assert_generated_code_is_safe(generate(net.network, lengths, fuse_cells, True).source, net.network)


def test_the_allowlist_catches_spec_text() -> None:
    """The checker itself: code holding a string, an import or a stray name fails it."""
    net = rnndsl.compile(HEAD + " layer h: 3 <- x\n output h }")
    good = net.code()
    assert_generated_code_is_safe(good, net.network)
    for bad in (
        good.replace("X['x']", "X['x; import os']"),
        good.replace("x = X", "import os\n    x = X"),
        good.replace("x = X['x']", "x = X['x']\n    os = x"),
        good.replace("F.linear", "F.__dict__"),
        good.replace("# network N", "# network N\u202e"),
    ):
        with pytest.raises(AssertionError):
            assert_generated_code_is_safe(bad, net.network)


# ---- names that are Python's, or the generated code's -------------------------------------------------------

PYTHON_NAMES = [
    "ctx",  # the loop function's autograd context
    "lambda",
    "class",
    "import",
    "def",
    "return",
    "None",
    "True",
    "False",
    "not",
    "in",
    "is",
    "async",
    "await",
    "yield",
    "print",
    "len",
    "exec",
    "open",
    "range",
    "sum",
    "id",
    "super",
    "torch",
    "F",
    "K",
    "P",
    "X",
    "I",
    "H",
    "B",
    "T",
    "t",
    "math",
    "valid",
    "state_",
    "lengths_",
    "tanh",
    "concat",
    "min",
    "max",
    "one_hot",
    "every",
    "layer_norm",
    "match",
    "case",
    "self_",
]
# Names of nn.ModuleDict/ParameterDict attributes: the module's dicts key them with a `__` suffix.
MODULE_ATTRIBUTES = [
    "values",
    "update",
    "keys",
    "items",
    "train",
    "eval",
    "float",
    "type",
    "to",
    "forward",
    "copy",
    "get",
    "cuda",
    "half",
]


def shapes_of(name: str) -> dict[str, str]:
    """The name as an input, a layer (read two steps back), an expression node (read one step back, from a
    learned initial value), a param, and a node read beside the clock `every(k)` inside a loop."""
    return {
        "input": f"network N {{ input {name}: 3\n layer h: 4 tanh <- {name}, h[t-1]\n init h = learned\n"
        f" output h\n output {name} }}",
        "layer": f"network N {{ input x: 3\n layer {name}: 4 tanh <- x, {name}[t-1], {name}[t-2]\n output {name} }}",
        "expr": f"network N {{ input x: 3\n layer h: 4 tanh <- x, e[t-1]\n {name} = h * 2 + {name}[t-1]\n"
        f" init {name} = learned\n e = tanh({name})\n output e\n output {name} last }}",
        "param": f"network N {{ input x: 3\n param {name}: 4 = normal\n layer h: 4 tanh <- x, {name}, h[t-1]\n"
        f" e = h * {name} + {name} * 0.5\n output e }}",
        "memory": f"network N {{ input {name}: 3 memory\n input x: 3\n layer k: 3 <- {name}\n"
        f" c = attend(dot(k, tanh(x + h[t-1])), {name})\n layer h: 3 tanh <- x, c\n output h }}",
        "attention": f"network N {{ input m: 3 memory\n input x: 3\n {name} = attend(dot(m, h[t-1]), m)\n"
        f" layer h: 3 tanh <- x, {name}\n output h }}",
        # beside the clock: read at each step of a loop that reads the step index too (`_s__t`)
        "clocked": f"network N {{ input x: 3\n {name} = x * every(3)\n layer h: 3 tanh <- x, g[t-1]\n"
        f" g = h * every(2) + {name} * (1 - every(2))\n output g }}",
    }


def runs_like_the_reference(net: rnndsl.CompiledNetwork, inputs: dict[str, torch.Tensor]) -> None:
    lengths = torch.tensor([5, 3])
    for check_finite in (False, True):
        out, ref = net(**inputs, check_finite=check_finite), reference(net, **inputs)
        for key in ref:
            torch.testing.assert_close(out[key], ref[key])
        out = net(**inputs, lengths=lengths, state=out.state, check_finite=check_finite)
        ref = reference(net, **inputs, lengths=lengths, state=ref.state)
        for key in ref:
            torch.testing.assert_close(out[key], ref[key])


def _run_named(name: str) -> None:
    for form, text in shapes_of(name).items():
        try:
            net = rnndsl.compile(text).double()
        except rnndsl.SpecError as err:
            assert f"`{name}`" in str(err), err  # a clear refusal names the name
            continue
        x = torch.randn(2, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        given = {name if form == "input" else "x": x}
        if form in ("memory", "attention"):  # a memory of 4 positions
            given[name if form == "memory" else "m"] = torch.randn(2, 4, 3, dtype=torch.float64)
        runs_like_the_reference(net, given)
        for lengths, grad in itertools.product((False, True), (False, True)):
            assert_generated_code_is_safe(net.code(lengths, grad=grad), net.network)
            if net.network.self_fed:
                assert_generated_code_is_safe(net.code(lengths, free=True, grad=grad), net.network)
            assert_generated_code_is_safe(generate(net.network, lengths, True, True).source, net.network)


@pytest.mark.parametrize(
    "name",
    [
        *PYTHON_NAMES,
        *MODULE_ATTRIBUTES,
        "watch",
    ],
)
def test_python_and_generated_code_names_as_node_names(name: str) -> None:
    _run_named(name)


@pytest.mark.parametrize("name", ["class", "T", "torch"])
def test_a_renamed_name_and_its_underscored_twin_stay_apart(name: str) -> None:
    """`class` becomes `class_` in code; a node really named `class_` must keep its own variable."""
    net = rnndsl.compile(
        f"network N {{ input x: 3\n layer {name}: 4 tanh <- x, {name}[t-1]\n"
        f" layer {name}_: 4 tanh <- x, {name}_[t-1]\n y = {name} - {name}_\n output y }}"
    ).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    torch.testing.assert_close(net(x).y, reference(net, x).y)


GENERATED_TWINS = {  # a node named like a name the compiler builds from another node's, both in one loop
    # `q[t-1]` read inside the loop is split into steps as the list of `_tm1_q`, `tm1_q` as its own list
    "shifted": "network N { input x: 3\n layer q: 3 tanh <- x\n layer tm1_q: 3 tanh <- x\n layer a: 3 <- x\n"
    " h = tanh(a + q[t-1] * tm1_q + h[t-1])\n output h }",
    # the loop collects the attention weights of `q` (`_aw_q`) and the node `aw_q`, each in its own list
    "attention": "network N { input m: 3 memory\n input x: 3\n q = attend(dot(m, h[t-1]), m)\n"
    " aw_q = tanh(q + h[t-1])\n layer h: 3 tanh <- x, q, aw_q\n output h\n output aw_q }",
}


@pytest.mark.parametrize("case", GENERATED_TWINS, ids=list(GENERATED_TWINS))
def test_a_node_named_like_a_generated_name_keeps_its_own_variable(case: str) -> None:
    net = rnndsl.compile(GENERATED_TWINS[case]).double()
    given = {"x": torch.randn(2, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))}
    if "memory" in GENERATED_TWINS[case]:
        given["m"] = torch.randn(2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    runs_like_the_reference(net, given)
    with torch.no_grad():  # the plain variant too (the calls above record autograd: the generated backward)
        torch.testing.assert_close(net(**given).h, reference(net, **given).h)
    for grad in (False, True):
        assert_generated_code_is_safe(net.code(grad=grad), net.network)


def test_an_input_named_self_is_refused_or_callable_by_name() -> None:
    text = "network N { input self: 3\n input y: 3\n h = self + y\n output h }"
    try:
        net = rnndsl.compile(text)
    except rnndsl.SpecError as err:
        assert "`self`" in str(err)
        return
    net(self=torch.zeros(1, 2, 3), y=torch.zeros(1, 2, 3))


# ---- limits ------------------------------------------------------------------------------------------------


def test_a_huge_layer_is_refused_before_allocation() -> None:
    text = "network N { input x: 1000000\n layer h: 1000000 tanh <- x\n output h }"
    err = spec_error(text)  # 10^12 float32 weights would be 4 TB: reaching torch.empty would raise, not this
    assert [d.message for d in err.diagnostics] == [
        "network `N` would have 1,000,001,000,000 parameters, above the limit of 1,073,741,824 "
        "(the largest is layer `h`: 1,000,000,000,000)"
    ]
    assert (err.diagnostics[0].line, err.diagnostics[0].column) == position(text, "layer h")


def test_a_layer_wider_than_the_size_limit() -> None:
    err = spec_error("network N { input x: 4\n layer h: 1048577 <- x\n output h }")
    assert "size of `h` is 1,048,577, above the limit of 1,048,576" in err.diagnostics[0].message


@pytest.mark.parametrize("delay", ["t-100000", "t+100000", "t-1001"])
def test_absurd_delays(delay: str) -> None:
    text = f"network N {{ input x: 4\n layer h: 4 <- x, h[{delay}]\n output h }}"
    err = spec_error(text)
    steps = int(delay[2:])
    assert err.diagnostics[0].message == f"`h` is read {steps} steps away, above the limit of 1000"
    assert (err.diagnostics[0].line, err.diagnostics[0].column) == position(text, f"h[{delay}]")


def test_parentheses_ten_thousand_deep_are_just_grouping() -> None:
    """Parentheses add no node to the syntax tree: `((...(x)...))` is `x`, whatever the depth."""
    deep = rnndsl.compile(HEAD + " h = " + "(" * 10_000 + "x" + ")" * 10_000 + "\n output h }")
    x = torch.randn(2, 3, 4)
    assert torch.equal(deep(x).h, x)


@pytest.mark.parametrize(
    ("opening", "closing"),
    [("-", ""), ("tanh(", ")"), ("-(", ")"), ("x + ", "")],
    ids=["negation", "calls", "negated-groups", "sum"],
)
def test_expressions_ten_thousand_deep(opening: str, closing: str) -> None:
    text = HEAD + " h = " + opening * 10_000 + "x" + closing * 10_000 + "\n output h }"
    err = spec_error(text)
    assert err.diagnostics[0].message == "expression is nested too deeply"
    # where the parse tree is deepest (found without recursion), not 1:1: on the statement's line
    assert err.diagnostics[0].line == text[: text.index(" h = ")].count("\n") + 1


def test_expressions_just_past_the_depth_limit_point_at_themselves() -> None:
    text = HEAD + " h = " + "tanh(" * MAX_EXPR_DEPTH + "x" + ")" * MAX_EXPR_DEPTH + "\n output h }"
    err = spec_error(text)
    assert (
        err.diagnostics[0].message == f"expression is nested {MAX_EXPR_DEPTH + 1} deep, above the limit of "
        f"{MAX_EXPR_DEPTH}"
    )
    assert (err.diagnostics[0].line, err.diagnostics[0].column) == position(text, "tanh(")


def test_a_file_over_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.rnn"
    path.write_text("network N { input x: 4\n output x }\n" + "# padding\n" * (MAX_SPEC_BYTES // 10), encoding="utf-8")
    with pytest.raises(rnndsl.SpecError) as info:
        rnndsl.compile(path)
    assert str(info.value).startswith(f"{path}:1:1: error: spec is larger than {MAX_SPEC_BYTES} bytes")


def test_the_size_limit_counts_bytes_not_characters() -> None:
    text = "network N { input x: 4\n output x }\n#" + "\u00e9" * (MAX_SPEC_BYTES // 2)  # 2 bytes each in UTF-8
    assert len(text) < MAX_SPEC_BYTES
    assert spec_error(text).diagnostics[0].message == f"spec is larger than {MAX_SPEC_BYTES} bytes"


def test_a_very_long_name_compiles_and_runs() -> None:
    name = "n" * 60_000  # three times in the spec: under the size limit
    net = rnndsl.compile(f"network N {{ input x: 2\n layer {name}: 3 tanh <- x, {name}[t-1]\n output {name} }}")
    assert net(torch.randn(1, 2, 2))[name].shape == (1, 2, 3)
    assert_generated_code_is_safe(net.code(), net.network)
