"""Highlighting: the Pygments lexer, found through its entry point as an installed package is, tokenises every
example without an Error token; the TextMate grammar for VS Code is the one the vocabulary makes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Error, Keyword, Name, Number

from rnndsl.editor.lexer import RnnLexer
from rnndsl.editor.textmate import grammar
from rnndsl.editor.vocabulary import FUNCTIONS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.rnn"))
VSCODE = ROOT / "editors" / "vscode"


def test_the_entry_point_finds_the_lexer_by_name_and_by_file_name() -> None:
    assert isinstance(get_lexer_by_name("rnn"), RnnLexer)
    assert isinstance(get_lexer_by_name("rnndsl"), RnnLexer)
    assert isinstance(get_lexer_for_filename("lstm.rnn"), RnnLexer)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_highlights_without_an_error_token(path: Path) -> None:
    text = path.read_text()
    tokens = list(get_lexer_by_name("rnn").get_tokens(text))
    assert [v for k, v in tokens if k in Error] == []
    assert "".join(v for _, v in tokens) == text if text.endswith("\n") else text + "\n"
    kinds = {k for k, _ in tokens}
    assert Keyword.Declaration in kinds and Name.Variable in kinds and Number.Integer in kinds


def test_words_get_their_roles_and_strangers_are_errors() -> None:
    text = "network N { input x: 4\n layer h: 8 tanh dropout=0.1 <- x, h[t-1]\n c = every(2) * h $\n output h last }"
    tokens = {v: k for k, v in RnnLexer().get_tokens(text) if v.strip()}
    assert tokens["N"] == Name.Class and tokens["tanh"] == Name.Builtin and tokens["every"] == Name.Builtin
    assert tokens["dropout"] == Name.Attribute and tokens["t"] == Name.Builtin.Pseudo
    assert tokens["last"] == Keyword and tokens["0.1"] == Number.Float and tokens["$"] == Error


def test_the_textmate_grammar_is_the_one_the_vocabulary_makes() -> None:
    path = VSCODE / "syntaxes" / "rnn.tmLanguage.json"
    made = json.dumps(grammar(), indent=2) + "\n"
    if os.environ.get("RNNDSL_UPDATE_GOLDEN"):
        path.write_text(made)
    assert path.read_text() == made, "the grammar is stale: RNNDSL_UPDATE_GOLDEN=1 pytest tests/test_highlight.py"
    functions = next(p["match"] for p in grammar()["patterns"] if p.get("name") == "support.function.rnn")
    assert all(re.search(functions, f"{name}(x)") for name in FUNCTIONS)


def test_the_textmate_grammar_covers_every_example() -> None:
    """Each pattern compiles (these patterns mean the same in Python's re as in Oniguruma), and with them
    every character of every example outside whitespace belongs to some pattern."""
    patterns = [re.compile(p["match"], re.M) for p in grammar()["patterns"]]
    for path in EXAMPLES:
        text, at = path.read_text(), 0
        while at < len(text):
            if text[at].isspace():
                at += 1
                continue
            found = [m for m in (p.match(text, at) for p in patterns) if m and m.end() > at]
            assert found, f"{path.name}: nothing matches {text[at : at + 20]!r}"
            at = found[0].end()


def test_the_vscode_extension_points_at_its_files() -> None:
    manifest = json.loads((VSCODE / "package.json").read_text())
    (language,) = manifest["contributes"]["languages"]
    (tm,) = manifest["contributes"]["grammars"]
    assert language["extensions"] == [".rnn"] and tm["scopeName"] == grammar()["scopeName"]
    assert (VSCODE / tm["path"]).is_file() and (VSCODE / language["configuration"]).is_file()
    config = json.loads((VSCODE / language["configuration"]).read_text())
    assert config["comments"]["lineComment"] == "#"
