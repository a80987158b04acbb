"""The language: what every later stage speaks, with no dependency but the standard library.

errors   Source, Span, Diagnostic, SpecError: every user-facing message, with file:line:col and a caret
syntax   the syntax tree (frozen dataclasses with spans) and the walkers over expressions
ops      the op table: each function and activation, its arity, size rule and code
ir       the checked network (`Network`, `Node`): what the front end gives and every back end reads
"""
