"""The back end: takes a checked network and its schedule, gives PyTorch code and the kernels it calls.

cells          a loop that is exactly an LSTM, GRU or Elman cell -> torch's fused kernel
codegen        ir.Network, stages -> Python source of the forward pass (`net.code()`)
loop_backward  a loop -> its generated backward (one autograd node per loop)
kernels        the helpers generated code calls (`K.loop`, `K.last_k`, ...)
evaluate       a direct interpreter of expressions over the op table (the reference, inits)
"""
