"""Editor support: takes spec text and a cursor, gives what an editor shows. No torch, no web.

vocabulary  the language's words by role (keywords, functions, activations, options), from the op table
analysis    text -> diagnostics (the checker's), the syntax tree and each network checked on its own
index       syntax tree -> every name as written, each resolved to what it names (definitions, uses)
describe    a resolved name -> hover text (kind, size, parameters, loop, delays; a block's inputs, outputs)
complete    text and cursor -> completion items (names in scope, functions, keywords, layer options)
lexer       the Pygments lexer (`pygmentize -l rnn`), registered under the `pygments.lexers` entry point
textmate    the TextMate grammar VS Code reads (editors/vscode/), made from the same vocabulary
lsp         `rnndsl lsp`: the language server on stdio (pygls) over the modules above
"""
