"""The TextMate grammar: takes the vocabulary, gives the grammar VS Code (and other TextMate-grammar editors)
highlight .rnn files with, as a JSON-ready dict. editors/vscode/syntaxes/rnn.tmLanguage.json is its output;
a test keeps the two equal (`RNNDSL_UPDATE_GOLDEN=1` rewrites the file).

>>> grammar()["scopeName"]
'source.rnn'
"""

from __future__ import annotations

from typing import Any

from rnndsl.editor.vocabulary import CONSTANTS, DECLARATIONS, FUNCTIONS, LAYER_OPTIONS, MODIFIERS, STATEMENTS

__all__ = ["grammar"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"


def _either(words: Any) -> str:
    return "|".join(sorted(words, key=lambda w: (-len(w), w)))


def grammar() -> dict[str, Any]:
    """The grammar as a dict (json.dumps it to get the .tmLanguage.json file)."""
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "rnn",
        "scopeName": "source.rnn",
        "fileTypes": ["rnn"],
        "patterns": [
            {"name": "comment.line.number-sign.rnn", "match": "#.*$"},
            {
                "match": rf"\b({_either(DECLARATIONS)})\s+({_NAME})",
                "captures": {"1": {"name": "storage.type.rnn"}, "2": {"name": "entity.name.type.rnn"}},
            },
            {
                "match": rf"\b({_either(STATEMENTS)})\s+({_NAME})",
                "captures": {"1": {"name": "keyword.other.rnn"}, "2": {"name": "variable.other.definition.rnn"}},
            },
            {
                "match": r"(\[)\s*(t)\s*([+-])\s*([0-9]+)\s*(\])",
                "captures": {
                    "1": {"name": "punctuation.section.brackets.rnn"},
                    "2": {"name": "variable.language.time.rnn"},
                    "3": {"name": "keyword.operator.arithmetic.rnn"},
                    "4": {"name": "constant.numeric.delay.rnn"},
                    "5": {"name": "punctuation.section.brackets.rnn"},
                },
            },
            {"name": "entity.other.attribute-name.option.rnn", "match": rf"\b({_either(LAYER_OPTIONS)})(?=\s*=)"},
            {"name": "keyword.other.rnn", "match": rf"\b({_either(STATEMENTS + MODIFIERS)})\b"},
            {"name": "constant.language.rnn", "match": rf"\b({_either(CONSTANTS)})\b"},
            {"name": "support.function.rnn", "match": rf"\b({_either(FUNCTIONS)})\b"},
            {"name": "constant.numeric.rnn", "match": r"\b([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\b"},
            {"name": "keyword.operator.feedback.rnn", "match": "<-"},
            {"name": "keyword.operator.rnn", "match": r"[=+\-*/]"},
            {"name": "punctuation.separator.rnn", "match": "[,;:]"},
            {"name": "punctuation.section.rnn", "match": r"[{}()\[\]]"},
            {"name": "variable.other.rnn", "match": _NAME},
        ],
    }
