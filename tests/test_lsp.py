"""`rnndsl lsp` spoken to as an editor would: a real LSP client (pygls's) runs the command as a subprocess and
talks to it over its stdin and stdout. Diagnostics on open and change, hover, definition (into a block),
completion, document symbols and rename."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pygls.exceptions import JsonRpcInvalidParams

pytest.importorskip("pygls")
from lsprotocol import types as t
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

JORDAN = """network Jordan {
    input  x: 16
    layer  h: 64 tanh    <- x, y[t-1]
    layer  y: 10 softmax <- h
    init   y = learned
    output y
}
"""


class Session:
    """One server process and a client, on an event loop of their own; `publish` waits for a document's
    diagnostics after an open or a change."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = LanguageClient("rnndsl-tests", "1")
        self.diagnostics: dict[str, list[t.Diagnostic]] = {}
        self.arrived: asyncio.Queue[str] = asyncio.Queue()
        self.versions: dict[str, int] = {}

        @self.client.feature(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def published(params: t.PublishDiagnosticsParams) -> None:  # pygls passes the client only to `ls`
            self.diagnostics[params.uri] = list(params.diagnostics)
            self.arrived.put_nowait(params.uri)

        self.run(self.client.start_io(sys.executable, "-m", "rnndsl", "lsp"))
        caps = t.ClientCapabilities()
        self.init = self.run(self.client.initialize_async(t.InitializeParams(capabilities=caps, process_id=None)))
        self.run(self._initialized())

    async def _initialized(self) -> None:
        self.client.initialized(t.InitializedParams())

    def run(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(work, 30))

    def notify(self, uri: str, send: Any) -> list[t.Diagnostic]:
        """Send a notification from inside the loop (pygls schedules the write on the running loop) and wait
        for the document's diagnostics."""

        async def sent() -> None:
            send()
            while await self.arrived.get() != uri:
                pass

        self.run(sent())
        return self.diagnostics[uri]

    def open(self, name: str, text: str) -> list[t.Diagnostic]:
        uri = f"file:///tmp/rnndsl-lsp-test/{name}"
        self.versions[uri] = 1
        item = t.TextDocumentItem(uri, "rnn", 1, text)
        return self.notify(uri, lambda: self.client.text_document_did_open(t.DidOpenTextDocumentParams(item)))

    def change(self, name: str, text: str) -> list[t.Diagnostic]:
        uri = f"file:///tmp/rnndsl-lsp-test/{name}"
        self.versions[uri] += 1
        doc = t.VersionedTextDocumentIdentifier(self.versions[uri], uri)
        params = t.DidChangeTextDocumentParams(doc, [t.TextDocumentContentChangeWholeDocument(text)])
        return self.notify(uri, lambda: self.client.text_document_did_change(params))

    async def _exit(self) -> None:
        self.client.exit(None)

    def doc(self, name: str) -> t.TextDocumentIdentifier:
        return t.TextDocumentIdentifier(f"file:///tmp/rnndsl-lsp-test/{name}")

    def close(self) -> None:
        self.run(self.client.shutdown_async(None))
        self.run(self._exit())
        self.run(self.client.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def lsp() -> Iterator[Session]:
    session = Session()
    yield session
    session.close()


def position(text: str, marker: str, inside: int = 0) -> t.Position:
    """The 0-based LSP position of the first `marker` in `text` (plus `inside` characters)."""
    before = text[: text.index(marker) + inside]
    return t.Position(before.count("\n"), len(before) - before.rfind("\n") - 1)


def test_server_announces_its_features(lsp: Session) -> None:
    caps = lsp.init.capabilities
    assert caps.hover_provider and caps.definition_provider and caps.document_symbol_provider
    assert caps.completion_provider is not None and caps.rename_provider
    assert lsp.init.server_info is not None and lsp.init.server_info.name == "rnndsl"


def test_diagnostics_on_open_and_on_change(lsp: Session) -> None:
    assert lsp.open("jordan.rnn", JORDAN) == []
    broken = JORDAN.replace("<- h\n", "<- hh\n")
    (found,) = lsp.change("jordan.rnn", broken)
    assert found.severity == t.DiagnosticSeverity.Error and found.source == "rnndsl"
    assert found.message == "unknown name `hh`\nhelp: did you mean `h`?"
    start = position(broken, "hh")
    assert found.range == t.Range(start, t.Position(start.line, start.character + 2))
    assert lsp.change("jordan.rnn", JORDAN) == []  # fixed: the error goes away


def test_syntax_errors_and_warnings_keep_their_severity(lsp: Session) -> None:
    (syntax,) = lsp.open("syntax.rnn", "network N {\n  input x: 4\n  layer h: 8 tanh x\n  output h\n}\n")
    assert syntax.severity == t.DiagnosticSeverity.Error and "a layer lists its sources after '<-'" in syntax.message
    unused = "network N {\n  input x: 4\n  layer u: 3 <- x\n  layer h: 8 tanh <- x\n  output h\n}\n"
    (warning,) = lsp.open("warn.rnn", unused)
    assert warning.severity == t.DiagnosticSeverity.Warning and "`u`" in warning.message
    assert warning.range.start == position(unused, "layer u")


def hover(lsp: Session, name: str, at: t.Position) -> str:
    found = lsp.run(lsp.client.text_document_hover_async(t.HoverParams(lsp.doc(name), at)))
    assert found is not None and isinstance(found.contents, t.MarkupContent)
    return found.contents.value


def test_hover_tells_kind_size_parameters_loop_and_delays(lsp: Session) -> None:
    lsp.open("hover.rnn", JORDAN)
    text = hover(lsp, "hover.rnn", position(JORDAN, "y[t-1]"))
    assert text.startswith("**layer** `y`: size 10, softmax")
    assert "650 parameters (10 × 64 weights, 10 bias)" not in text  # a learned init adds its 10
    assert "660 parameters" in text and "in the loop {h, y} (delay t-1)" in text
    assert "read at t-1 by `h`; before the first step that reads learned" in text
    h = hover(lsp, "hover.rnn", position(JORDAN, "h: 64"))
    assert "1,728 parameters (64 × 26 weights, 64 bias)" in h and "reads `x`, `y[t-1]`" in h
    assert hover(lsp, "hover.rnn", position(JORDAN, "tanh")).startswith("**tanh(x)**: hyperbolic tangent")


def test_hover_on_a_use_shows_the_block_inputs_and_outputs(lsp: Session) -> None:
    text = (ROOT / "examples" / "stacked_generic.rnn").read_text()
    lsp.open("stacked.rnn", text)
    use = hover(lsp, "stacked.rnn", position(text, "l2 = "))
    assert "**use** `l2` = network `LSTMCell`" in use and "inputs: `x`: X" in use and "outputs: `h`" in use
    assert "sizes: X = 128, H = 64" in use
    inner = hover(lsp, "stacked.rnn", position(text, "h = o * tanh(c)"))  # inside the generic block
    assert "as `l1.h` in `StackedLSTM`: size 128" in inner and "as `l2.h` in `StackedLSTM`: size 64" in inner


def definition(lsp: Session, name: str, at: t.Position) -> t.Location:
    found = lsp.run(lsp.client.text_document_definition_async(t.DefinitionParams(lsp.doc(name), at)))
    assert isinstance(found, t.Location), found
    return found


def test_definition_of_a_node_and_into_a_block(lsp: Session) -> None:
    text = (ROOT / "examples" / "stacked_generic.rnn").read_text()
    lsp.open("stacked.rnn", text)
    at = definition(lsp, "stacked.rnn", position(text, "l1.h", inside=3)).range.start
    assert at == position(text, "h = o * tanh")  # the block's own h
    at = definition(lsp, "stacked.rnn", position(text, "LSTMCell(X = 32")).range.start
    assert at == position(text, "network LSTMCell", inside=8)
    at = definition(lsp, "stacked.rnn", position(text, "x = x)", inside=4)).range.start
    assert at == position(text, "x: 32")  # the value: StackedLSTM's input
    at = definition(lsp, "stacked.rnn", position(text, "x = x)")).range.start
    assert at == position(text, "x: X")  # the key: the block's input


def labels(lsp: Session, name: str, text: str, at: t.Position) -> dict[str, t.CompletionItem]:
    lsp.open(name, text)
    found = lsp.run(lsp.client.text_document_completion_async(t.CompletionParams(lsp.doc(name), at)))
    assert isinstance(found, t.CompletionList)
    return {i.label: i for i in found.items}


def test_completion_offers_names_functions_activations_options_keywords(lsp: Session) -> None:
    typing = JORDAN.replace("layer  y: 10 softmax <- h", "layer  y: 10 softmax <- h, ")
    items = labels(lsp, "complete.rnn", typing, position(typing, "h, ", inside=3))
    assert {"x", "h", "y", "tanh", "layer_norm", "attend"} <= set(items)
    assert items["tanh"].kind == t.CompletionItemKind.Function and items["x"].kind == t.CompletionItemKind.Variable
    typing = JORDAN.replace("layer  y: 10 softmax <- h", "layer  y: 10 ")
    items = labels(lsp, "complete.rnn", typing, position(typing, "y: 10 ", inside=6))
    assert {"tanh", "sigmoid", "softmax", "bias", "dropout", "init"} <= set(items)
    assert items["dropout"].insert_text == "dropout="
    typing = JORDAN.replace("    output y\n", "    ou\n")
    items = labels(lsp, "complete.rnn", typing, position(typing, "    ou", inside=6))
    assert {"input", "layer", "output", "use", "param", "init"} <= set(items)
    blocks = (ROOT / "examples" / "stacked_generic.rnn").read_text()
    blocks = blocks.replace("layer  y: 10 <- l2.h", "layer y: 10 <- l1.")
    items = labels(lsp, "complete.rnn", blocks, position(blocks, "<- l1.", inside=6))
    assert set(items) == {"h"}


def test_document_symbols_list_networks_models_and_nodes(lsp: Session) -> None:
    text = (ROOT / "examples" / "tasks" / "g2p_gru.rnn").read_text()
    lsp.open("g2p.rnn", text)
    found = lsp.run(lsp.client.text_document_document_symbol_async(t.DocumentSymbolParams(lsp.doc("g2p.rnn"))))
    assert found is not None
    tops = {s.name: s for s in found if isinstance(s, t.DocumentSymbol)}
    assert {"Speller", "Speaker", "G2P"} <= set(tops) and tops["G2P"].kind == t.SymbolKind.Module
    assert {c.name for c in tops["G2P"].children or []} == {"enc", "dec"}
    speller = {c.name: c for c in tops["Speller"].children or []}
    assert speller["letters"].kind == t.SymbolKind.Variable and speller["letters"].detail == "input"
    assert speller["letters"].selection_range.start == position(text, "letters: tokens")


def rename(lsp: Session, name: str, at: t.Position, new: str) -> t.WorkspaceEdit | None:
    return lsp.run(lsp.client.text_document_rename_async(t.RenameParams(lsp.doc(name), at, new)))


def test_rename_a_node_everywhere_it_is_read(lsp: Session) -> None:
    lsp.open("rename.rnn", JORDAN)
    edit = rename(lsp, "rename.rnn", position(JORDAN, "y[t-1]"), "out")
    assert edit is not None and edit.changes is not None
    edits = edit.changes["file:///tmp/rnndsl-lsp-test/rename.rnn"]
    lines = JORDAN.split("\n")
    for e in edits:
        row = list(lines[e.range.start.line])
        row[e.range.start.character : e.range.end.character] = e.new_text
        lines[e.range.start.line] = "".join(row)
    renamed = "\n".join(lines)
    assert renamed == JORDAN.replace("y[t-1]", "out[t-1]").replace("y: 10", "out: 10").replace(
        "init   y", "init   out"
    ).replace("output y", "output out")
    assert lsp.change("rename.rnn", renamed) == []  # still checks


def test_rename_through_a_block_and_refusals(lsp: Session) -> None:
    text = (ROOT / "examples" / "stacked_generic.rnn").read_text()
    lsp.open("rename2.rnn", text)
    edit = rename(lsp, "rename2.rnn", position(text, "output h", inside=7), "hidden")
    assert edit is not None and edit.changes is not None
    # its definition, `output h`, h[t-1] in the four gates, and the two reads from outside: l1.h and l2.h
    assert len(edit.changes["file:///tmp/rnndsl-lsp-test/rename2.rnn"]) == 8
    refused = [("layer", "keyword"), ("2x", "letters, digits"), ("_h", "may not start"), ("c", "already defines")]
    for bad, why in refused:
        with pytest.raises(Exception, match=why):
            rename(lsp, "rename2.rnn", position(text, "output h", inside=7), bad)


def test_a_request_about_a_document_neither_open_nor_on_disk_is_an_invalid_params_answer(lsp: Session) -> None:
    """Not an internal error with the server's traceback: -32602, naming the document."""
    at = t.Position(0, 0)
    for request in (
        lambda: lsp.client.text_document_hover_async(t.HoverParams(lsp.doc("never-opened.rnn"), at)),
        lambda: lsp.client.text_document_completion_async(t.CompletionParams(lsp.doc("never-opened.rnn"), at)),
    ):
        with pytest.raises(JsonRpcInvalidParams, match=r"never-opened\.rnn is not open here and cannot be read"):
            lsp.run(request())
    lsp.open("after.rnn", JORDAN)  # the server goes on
    assert "layer" in hover(lsp, "after.rnn", position(JORDAN, "y[t-1]"))


def test_the_server_imports_no_torch() -> None:
    """A front-end tool: starting the server and analysing a spec loads no torch."""
    import subprocess

    probe = (
        "import sys\nfrom rnndsl.editor import lsp\nfrom rnndsl.editor.analysis import analyse\n"
        f"analyse({JORDAN!r})\nassert 'torch' not in sys.modules, 'the language server imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)
