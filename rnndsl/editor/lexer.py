"""The Pygments lexer: takes .rnn text, gives highlighted tokens (`pygmentize -l rnn`, Sphinx, MkDocs).

Registered under the `pygments.lexers` entry point (pyproject.toml), so any installed Pygments finds it by
the name `rnn` or a file's `.rnn` suffix. Its words come from `vocabulary`: the op table's functions and
activations, the keywords, the layer options. Anything it does not know is an Error token, which the tests
look for in every example.

>>> from pygments.token import Keyword, Name
>>> tokens = [(k, v) for k, v in RnnLexer().get_tokens("layer h: 8 tanh <- x, h[t-1]") if v.strip()]
>>> tokens[:4] == [(Keyword, "layer"), (Name.Variable, "h"), (Punctuation, ":"), (Number.Integer, "8")]
True
"""

from __future__ import annotations

from typing import ClassVar

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, Whitespace

from rnndsl.editor.vocabulary import CONSTANTS, DECLARATIONS, FUNCTIONS, LAYER_OPTIONS, MODIFIERS, STATEMENTS

__all__ = ["RnnLexer"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"


class RnnLexer(RegexLexer):
    """The .rnn language of rnndsl: networks of layers with feedback edges."""

    name = "rnn"
    aliases: ClassVar[list[str]] = ["rnn", "rnndsl"]
    filenames: ClassVar[list[str]] = ["*.rnn"]
    mimetypes: ClassVar[list[str]] = ["text/x-rnndsl"]
    url = "https://pypi.org/project/rnndsl/"

    tokens: ClassVar[dict[str, list]] = {
        "root": [
            (r"\s+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (rf"({'|'.join(DECLARATIONS)})(\s+)({_NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (rf"({'|'.join(STATEMENTS)})(\s+)({_NAME})", bygroups(Keyword, Whitespace, Name.Variable)),
            (
                r"(\[)(\s*)(t)(\s*)([+-])(\s*)([0-9]+)(\s*)(\])",
                bygroups(
                    Punctuation,
                    Whitespace,
                    Name.Builtin.Pseudo,
                    Whitespace,
                    Operator,
                    Whitespace,
                    Number.Integer,
                    Whitespace,
                    Punctuation,
                ),
            ),
            (words(tuple(LAYER_OPTIONS), suffix=r"(?=\s*=)"), Name.Attribute),
            (words(STATEMENTS + MODIFIERS, suffix=r"\b"), Keyword),
            (words(CONSTANTS, prefix=r"\b", suffix=r"\b"), Keyword.Constant),
            (words(tuple(FUNCTIONS), prefix=r"\b", suffix=r"\b"), Name.Builtin),
            (r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)", Number.Float),
            (r"[0-9]+\.[0-9]*|\.[0-9]+", Number.Float),
            (r"[0-9]+", Number.Integer),
            (r"<-", Operator),
            (r"[=+\-*/]", Operator),
            (r"[{}()\[\]:,;]", Punctuation),
            (_NAME, Name),
        ],
    }
