"""The editor's pieces without a client: analysis (one broken network leaves the others' facts), the index
(every name resolved, models included), hover texts and completion in each context."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnndsl.editor.analysis import analyse
from rnndsl.editor.complete import complete
from rnndsl.editor.describe import describe
from rnndsl.editor.index import Index, Symbol

ROOT = Path(__file__).resolve().parent.parent
G2P = (ROOT / "examples" / "tasks" / "g2p_gru.rnn").read_text()
TWO = """network Fine {
    input  x: 4
    layer  h: 8 tanh <- x, h[t-1]
    output h
}
network Broken {
    input  x: 4
    layer  h: 8 tanh <- x, q[t-1]
    output h
}
"""


def at(text: str, marker: str, inside: int = 0) -> tuple[int, int]:
    before = text[: text.index(marker) + inside]
    return before.count("\n") + 1, len(before) - before.rfind("\n")


def test_one_broken_network_keeps_the_others_facts() -> None:
    a = analyse(TWO, "two.rnn")
    assert not a.ok and [d.message for d in a.diagnostics] == ["unknown name `q`"]
    assert list(a.networks) == ["Fine"] and a.networks["Fine"]["h"].size == 8
    assert describe(a, Symbol("node", "Fine", "h")).startswith("**layer** `h`: size 8, tanh")
    broken = describe(a, Symbol("node", "Broken", "h"))
    assert broken is not None and "does not check yet" in broken


def test_a_text_that_does_not_parse_is_one_diagnostic_and_no_tree() -> None:
    a = analyse("network N {\n input x: 4\n layer h: 8 tanh x\n}", "bad.rnn")
    assert a.program is None and len(a.diagnostics) == 1 and a.diagnostics[0].severity == "error"


def test_model_names_resolve_to_instances_networks_and_their_ports() -> None:
    a = analyse(G2P, "g2p.rnn")
    index = Index(a.program, G2P)
    binding = index.at(*at(G2P, "context = enc.h"))
    assert binding is not None and binding.symbol == Symbol("node", "Speaker", "context")
    target = index.definition(binding.symbol)
    assert target is not None and (target.span.line, target.span.column) == at(G2P, "context: 256")
    output = index.at(*at(G2P, "enc.h)", inside=4))
    assert output is not None and output.symbol == Symbol("node", "Speller", "h")
    instance = index.at(*at(G2P, "enc.h)"))
    assert instance is not None and instance.symbol == Symbol("instance", "G2P", "enc")
    text = describe(a, Symbol("instance", "G2P", "dec"))
    assert text is not None and "network `Speaker`" in text and "bound: context = enc.h" in text
    model = describe(a, Symbol("model", "", "G2P"))
    assert model is not None and f"{a.models['G2P'].parameter_count():,} parameters" in model


def labels(text: str, marker: str, inside: int) -> list[str]:
    return [i.label for i in complete(text, *at(text, marker, inside))]


@pytest.mark.parametrize(
    ("text", "marker", "want"),
    [
        ("", "", {"network", "model"}),
        ("network N {\n input x: 4\n input s: ", "s: ", {"tokens"}),
        ("network N {\n input x: 4 ", "4 ", {"static", "memory"}),
        ("network N {\n param p: 4 = ", "= ", {"zeros", "ones", "normal", "uniform"}),
        ("network N {\n input x: 4\n layer h: 8 tanh bias=", "bias=", {"true", "false"}),
        ("network N {\n input x: 4\n layer h: 8 tanh init=", "init=", {"xavier", "orthogonal"}),
        ("network N {\n input x: 4\n layer h: 8 tanh <- x\n output h ", "output h ", {"last"}),
        ("network N {\n input x: 4\n layer h: 8 tanh <- x\n output ", "output ", {"x", "h"}),
        ("network N {\n input x: 4\n init h = ", "init h = ", {"zeros", "learned", "x"}),
        ("network N {\n input w: tokens(5) = ", "= ", {"sample", "argmax"}),
    ],
)
def test_completion_in_each_context(text: str, marker: str, want: set[str]) -> None:
    assert want <= set(labels(text, marker, len(marker)))


def test_completion_of_blocks_their_arguments_and_model_parts() -> None:
    text = (ROOT / "examples" / "stacked_generic.rnn").read_text()
    typing = text.replace("use    l2 = LSTMCell(X = 128, H = 64, x = l1.h)", "use l2 = LST")
    assert labels(typing, "use l2 = LST", 12) == ["LSTMCell"]
    typing = text.replace("use    l2 = LSTMCell(X = 128, H = 64, x = l1.h)", "use l2 = LSTMCell(X = 128, ")
    items = {i.label: i for i in complete(typing, *at(typing, "LSTMCell(X = 128, ", 18))}
    assert set(items) == {"X", "H", "x"} and items["x"].insert == "x = "
    model = G2P.replace("dec = Speaker(context = enc.h)", "dec = Speaker(")
    assert labels(model, "Speaker(", 8) == ["context", "phone"]
    model = G2P.replace("dec = Speaker(context = enc.h)", "dec = ")
    assert set(labels(model, "dec = ", 6)) == {"Speller", "Speaker"}
