"""The front end: takes spec text, gives checked `lang.ir.Network`s and `Model`s, or a `SpecError`.

parse    spec text          -> syntax tree      (grammars/rnn.lark, Lark LALR)
inline   syntax tree        -> flat statements  (`use` blocks expanded; generic ones bound by `sizes`)
check    flat statements    -> ir.Network       (names, sizes, delays, loops; warnings)
compose  model declarations -> compose.Model    (networks in order, each on its own time axis)
"""
