"""The graphs of a checked network (networkx, no torch).

folded    ir.Network         -> folded MultiDiGraph (edges carry `delay`), its loops
unroll    ir.Network, steps  -> unrolled DiGraph of (name, t) nodes
schedule  ir.Network         -> stages: batched over time, or one loop per strongly connected cycle
"""
