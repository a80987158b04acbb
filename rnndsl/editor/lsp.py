"""The language server: takes LSP requests on stdin, gives answers on stdout (`rnndsl lsp`), on pygls.

Diagnostics on open and on every change (the checker's messages with their hints, warnings as warnings),
hover, go to definition (into a block's network too), completion, document symbols and rename of a node.
Each request reads one `analysis.Analysis` of the document's text, kept until the text changes.

Positions: the checker counts 1-based lines and columns in characters; LSP counts 0-based lines and,
unless the client agrees otherwise, UTF-16 units. pygls's document converts between the two.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from lsprotocol import types as t
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import ServerTextPosition, ServerTextRange

from rnndsl._version import __version__
from rnndsl.editor.analysis import Analysis, analyse
from rnndsl.editor.complete import Item, complete
from rnndsl.editor.describe import describe
from rnndsl.editor.index import NAME, Index, Occurrence, Symbol
from rnndsl.frontend.names import RESERVED
from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Diagnostic, Span

__all__ = ["cmd_lsp", "serve", "server"]

_SEVERITY = {"error": t.DiagnosticSeverity.Error, "warning": t.DiagnosticSeverity.Warning}
_COMPLETION_KIND = {
    "node": t.CompletionItemKind.Variable,
    "function": t.CompletionItemKind.Function,
    "activation": t.CompletionItemKind.Function,
    "keyword": t.CompletionItemKind.Keyword,
    "option": t.CompletionItemKind.Property,
    "value": t.CompletionItemKind.EnumMember,
    "network": t.CompletionItemKind.Class,
    "input": t.CompletionItemKind.Field,
    "output": t.CompletionItemKind.Field,
    "size": t.CompletionItemKind.TypeParameter,
    "instance": t.CompletionItemKind.Variable,
}
_SYMBOL_KIND = {
    s.Input: t.SymbolKind.Variable,
    s.Param: t.SymbolKind.Constant,
    s.Layer: t.SymbolKind.Function,
    s.Assign: t.SymbolKind.Variable,
    s.Use: t.SymbolKind.Module,
}
_RENAMED = ("node", "use")  # what rename changes: a node (everywhere it is read, blocks included) or a use


@dataclass(frozen=True)
class _Seen:
    """One version of a document: its analysis and, when it parses, the index of its names."""

    analysis: Analysis
    index: Index | None


class _Server(LanguageServer):
    def __init__(self) -> None:
        super().__init__("rnndsl", __version__, text_document_sync_kind=t.TextDocumentSyncKind.Incremental)
        self.seen: dict[str, _Seen] = {}

    def document(self, uri: str) -> TextDocument:
        """The document at `uri`: the editor's text where it is open, else the file's (pygls reads it); a request
        about neither gets an error answer naming it (-32602), not an internal error."""
        doc = self.workspace.get_text_document(uri)
        try:
            doc.source  # noqa: B018 (read now, where a missing file can be answered)
        except (OSError, UnicodeDecodeError) as err:
            raise JsonRpcInvalidParams(f"{uri} is not open here and cannot be read ({err}): open it first") from None
        return doc

    def look(self, uri: str) -> tuple[TextDocument, _Seen]:
        doc = self.document(uri)
        seen = self.seen.get(uri)
        if seen is None or seen.analysis.source.text != doc.source:
            analysis = analyse(doc.source, doc.path or uri)
            index = Index(analysis.program, doc.source) if analysis.program is not None else None
            seen = self.seen[uri] = _Seen(analysis, index)
        return doc, seen

    def publish(self, uri: str) -> None:
        doc, seen = self.look(uri)
        found = [_diagnostic(doc, d) for d in seen.analysis.diagnostics]
        self.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri, found, doc.version))


def server() -> LanguageServer:
    """A language server with every feature registered; `serve()` runs one on stdio."""
    ls = _Server()

    @ls.feature(t.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: _Server, params: t.DidOpenTextDocumentParams) -> None:
        ls.publish(params.text_document.uri)

    @ls.feature(t.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: _Server, params: t.DidChangeTextDocumentParams) -> None:
        ls.publish(params.text_document.uri)

    @ls.feature(t.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: _Server, params: t.DidCloseTextDocumentParams) -> None:
        ls.seen.pop(params.text_document.uri, None)
        ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(params.text_document.uri, []))

    @ls.feature(t.TEXT_DOCUMENT_HOVER)
    def hover(ls: _Server, params: t.HoverParams) -> t.Hover | None:
        doc, seen = ls.look(params.text_document.uri)
        found = _at(doc, seen, params.position)
        text = describe(seen.analysis, found.symbol) if found else None
        if found is None or text is None:
            return None
        return t.Hover(t.MarkupContent(t.MarkupKind.Markdown, text), _range(doc, found.span))

    @ls.feature(t.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: _Server, params: t.DefinitionParams) -> t.Location | None:
        doc, seen = ls.look(params.text_document.uri)
        found = _at(doc, seen, params.position)
        target = seen.index.definition(found.symbol) if found and seen.index else None
        return t.Location(doc.uri, _range(doc, target.span)) if target else None

    @ls.feature(t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=[".", " ", "(", ","]))
    def completion(ls: _Server, params: t.CompletionParams) -> t.CompletionList:
        doc = ls.document(params.text_document.uri)
        at = doc.position_from_client_units(params.position)
        items = [_item(i) for i in complete(doc.source, at.line + 1, at.character + 1)]
        return t.CompletionList(is_incomplete=False, items=items)

    @ls.feature(t.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def symbols(ls: _Server, params: t.DocumentSymbolParams) -> list[t.DocumentSymbol]:
        doc, seen = ls.look(params.text_document.uri)
        return _symbols(doc, seen)

    @ls.feature(t.TEXT_DOCUMENT_PREPARE_RENAME)
    def prepare_rename(ls: _Server, params: t.PrepareRenameParams) -> t.PrepareRenamePlaceholder | None:
        doc, seen = ls.look(params.text_document.uri)
        found = _at(doc, seen, params.position)
        if found is None or found.symbol.kind not in _RENAMED:
            return None
        return t.PrepareRenamePlaceholder(_range(doc, found.span), found.symbol.name)

    @ls.feature(t.TEXT_DOCUMENT_RENAME)
    def rename(ls: _Server, params: t.RenameParams) -> t.WorkspaceEdit | None:
        doc, seen = ls.look(params.text_document.uri)
        found = _at(doc, seen, params.position)
        if found is None or seen.index is None or found.symbol.kind not in _RENAMED:
            return None
        _check_new_name(params.new_name, found, seen.index)
        edits = [t.TextEdit(_range(doc, o.span), params.new_name) for o in seen.index.occurrences(found.symbol)]
        return t.WorkspaceEdit(changes={doc.uri: edits})

    return ls


def serve() -> None:
    """Run the language server on stdin and stdout until the client says exit."""
    server().start_io()


def cmd_lsp(args: argparse.Namespace) -> int:
    """`rnndsl lsp`: serve until the editor ends the session."""
    serve()
    return 0


def _item(item: Item) -> t.CompletionItem:
    kind = _COMPLETION_KIND[item.kind]
    return t.CompletionItem(item.label, kind=kind, detail=item.detail or None, insert_text=item.insert or None)


def _at(doc: TextDocument, seen: _Seen, position: t.Position) -> Occurrence | None:
    if seen.index is None:
        return None
    at = doc.position_from_client_units(position)
    return seen.index.at(at.line + 1, at.character + 1)


def _range(doc: TextDocument, span: Span) -> t.Range:
    """A span (1-based, end exclusive) as an LSP range in the client's units; a span without an end covers
    the name or number at its start, else one character."""
    end_line, end_column = span.end_line, span.end_column
    if not end_line or (end_line, end_column) <= (span.line, span.column):
        row = doc.lines[span.line - 1] if 0 < span.line <= len(doc.lines) else ""
        word = NAME.match(row, span.column - 1) or re.compile(r"[0-9.]+").match(row, span.column - 1)
        end_line, end_column = span.line, span.column + (len(word.group()) if word else 1)
    server = ServerTextRange(
        ServerTextPosition(span.line - 1, span.column - 1), ServerTextPosition(end_line - 1, end_column - 1)
    )
    return doc.range_to_client_units(server)


def _diagnostic(doc: TextDocument, d: Diagnostic) -> t.Diagnostic:
    message = d.message + (f"\nhelp: {d.hint}" if d.hint else "")
    return t.Diagnostic(_range(doc, d.span), message, severity=_SEVERITY[d.severity], source="rnndsl")


def _check_new_name(name: str, found: Occurrence, index: Index) -> None:
    """Refuse a new name the checker would refuse, or one the network already defines."""
    problem = ""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        problem = "a name is letters, digits and '_', not starting with a digit"
    elif name in RESERVED:
        problem = "it is a keyword of the language"
    elif name.startswith("_") or "__" in name:
        problem = "names may not start with '_' or contain '__'"
    elif any(index.definition(Symbol(kind, found.symbol.scope, name)) for kind in _RENAMED):
        problem = f"`{found.symbol.scope}` already defines `{name}`"
    if problem:
        raise JsonRpcInvalidParams(f"cannot rename `{found.symbol.name}` to `{name}`: {problem}")


def _symbols(doc: TextDocument, seen: _Seen) -> list[t.DocumentSymbol]:
    program = seen.analysis.program
    if program is None:
        return []
    out = []
    for net in program.networks:
        children = []
        for st in net.body:
            if type(st) in _SYMBOL_KIND:
                kind = "use" if isinstance(st, s.Use) else "node"
                named = seen.index.definition(Symbol(kind, net.name, st.name)) if seen.index else None
                where = named.span if named else None
                children.append(_symbol(doc, st.name, _SYMBOL_KIND[type(st)], st.span, _detail(st), where))
        out.append(_symbol(doc, net.name, t.SymbolKind.Class, net.span, "network", net.name_span, children))
    for model in program.models:
        children = [_symbol(doc, i.name, t.SymbolKind.Object, i.span, i.network, i.name_span) for i in model.instances]
        out.append(_symbol(doc, model.name, t.SymbolKind.Module, model.span, "model", model.name_span, children))
    return out


def _detail(st: s.Stmt) -> str:
    if isinstance(st, s.Use):
        return f"use {st.network}"
    return {s.Input: "input", s.Param: "param", s.Layer: "layer", s.Assign: "expression"}.get(type(st), "")


def _symbol(
    doc: TextDocument,
    name: str,
    kind: t.SymbolKind,
    span: Span,
    detail: str,
    name_span: Span | None = None,
    children: list[t.DocumentSymbol] | None = None,
) -> t.DocumentSymbol:
    whole = _range(doc, span)
    return t.DocumentSymbol(
        name, kind, whole, _range(doc, name_span) if name_span else whole, detail=detail, children=children
    )
