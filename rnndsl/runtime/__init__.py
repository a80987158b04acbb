"""The runtime: takes a checked network or model, gives a `torch.nn.Module` that runs it.

network     ir.Network     -> CompiledNetwork (parameters, initial values, the generated code), Outputs, State
model       compose.Model  -> CompiledModel (an encoder's outputs bound to a decoder's inputs)
validate    a call's arguments -> checked tensors, or a ValueError naming what is wrong
feed        self-fed inputs: what each step is fed, and sampling (`Sampler`)
guard       `check_finite=True`: where NaN or Inf first appears (`NonFiniteError`)
generation  sampling, greedy and beam search from a self-fed network
reference   the oracle: the unrolled DAG evaluated node by node
"""

from __future__ import annotations

from rnndsl.runtime.network import CompiledNetwork
from rnndsl.runtime.values import Outputs, State

__all__ = ["CompiledNetwork", "Outputs", "State"]
