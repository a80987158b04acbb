"""Validate: takes what a caller passed to a compiled network, gives checked tensors or a ValueError.

Every message names the input, what was expected and what came; nothing is silently broadcast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from rnndsl.backend.kernels import valid_mask
from rnndsl.frontend.names import did_you_mean
from rnndsl.runtime.values import State

if TYPE_CHECKING:
    from rnndsl.lang.ir import Node
    from rnndsl.runtime.network import CompiledNetwork, Layout

__all__ = ["Call", "Signature", "validate"]


@dataclass(slots=True)
class Call:
    inputs: dict[str, torch.Tensor]
    batch: int
    steps: int
    lengths: torch.Tensor | None
    state: Mapping[str, torch.Tensor] | None
    memory_lengths: dict[str, torch.Tensor] = field(default_factory=dict)  # memory input -> (batch,) lengths
    memories: tuple[str, ...] = ()  # the network's memory inputs

    def code_inputs(self) -> dict[str, torch.Tensor | None]:
        """The inputs as the generated code reads them: with each memory's keep mask (`NAME:keep`, (B, S, 1)
        bool, or None where every position counts)."""
        out: dict[str, torch.Tensor | None] = dict(self.inputs)
        for name in self.memories:
            n = self.memory_lengths.get(name)
            out[f"{name}:keep"] = None if n is None else valid_mask(n, self.inputs[name].shape[1])
        return out


Described = tuple[str, torch.Size, torch.dtype, torch.device]  # what a signature holds of an input or state tensor


@dataclass(frozen=True)
class Signature:
    """What a checked call was given, as types, shapes, dtypes and devices: a later call given tensors that match it
    in all of these passes every check `validate` makes but one, the token ids' range (made again), so `match` gives
    its `Call` after a few comparisons. `CompiledNetwork.forward` keeps its last call's, for calls given inputs and at
    most a `state` (streaming and beam search make many such calls, each a step: validating afresh measured about
    a tenth of a GRU's call of one step at 8 x 1 x 64 -> 128)."""

    positional: str | None  # the input given positionally
    names: tuple[str, ...]  # the inputs given by name, in the order given
    tensors: tuple[Described, ...]  # of each input given
    tokens: tuple[Node, ...]  # token inputs: their range is checked at every call
    state: tuple[Described, ...] | None  # of each state entry, in the network's order; None: no state given
    signature: str  # the network's state signature (`State.signature`)
    like: torch.Tensor  # the network's `like` when checked (its dtype and device); a moved network's is another
    batch: int
    steps: int
    memories: tuple[str, ...]

    @classmethod
    def of(
        cls,
        net: CompiledNetwork,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        state: Any,
        call: Call,
        like: torch.Tensor,
    ) -> Signature | None:
        """The signature of a call `validate` passed; None where later calls cannot skip the checks: a self-fed
        input left to run free, a tensor subclass, a state that is not a `State`."""
        layout = net.layout
        if any(name not in call.inputs for name in layout.fed) or (state is not None and type(state) is not State):
            return None
        given = dict(kwargs)  # as given: a token input's dtype may differ from the int64 `validate` gives
        positional = layout.sequences[0] if args else None
        if positional is not None:
            given[positional] = args[0]
        states = () if state is None else tuple(state.values())
        if any(type(value) is not torch.Tensor for value in (*given.values(), *states)):
            return None
        return cls(
            positional,
            tuple(kwargs),
            tuple(_tensor(name, value) for name, value in given.items()),
            tuple(node for node in layout.inputs if node.input_kind == "tokens" and node.name in given),
            None if state is None else tuple(_tensor(node.name, state[node.name]) for node, _ in layout.past),
            net.signature,
            like,
            call.batch,
            call.steps,
            call.memories,
        )

    def match(self, args: tuple[Any, ...], kwargs: dict[str, Any], state: Any) -> Call | None:
        """The checked call of inputs and state that match this signature, or None (then `validate` them).
        Written for speed: it runs before every such call (1.5 us here, 3.5 with a state; `validate` 5-10)."""
        if tuple(kwargs) != self.names or len(args) != (self.positional is not None):
            return None
        inputs = dict(kwargs)
        if args:
            inputs[self.positional] = args[0]  # type: ignore[index]
        for name, shape, dtype, device in self.tensors:
            value = inputs[name]
            if type(value) is not torch.Tensor or value.shape != shape or value.dtype is not dtype:
                return None
            if value.device != device:
                return None
        if self.state is None:
            if state is not None:
                return None
        elif type(state) is not State or state.signature != self.signature or len(state) != len(self.state):
            return None
        else:
            for name, shape, dtype, device in self.state:
                value = state.get(name)
                if type(value) is not torch.Tensor or value.shape != shape or value.dtype is not dtype:
                    return None
                if value.device != device:
                    return None
        for node in self.tokens:
            inputs[node.name] = _token_ids(node, inputs[node.name])
        return Call(inputs, self.batch, self.steps, None, state, {}, self.memories)


def _tensor(name: str, x: torch.Tensor) -> Described:
    return name, x.shape, x.dtype, x.device


def validate(
    net: CompiledNetwork,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    lengths: Any,
    state: Any,
    steps: Any,
    batch_size: Any = None,
    memory_lengths: Any = None,
) -> Call:
    """Check inputs, lengths and state against the network; raise ValueError naming what is wrong."""
    layout = net.layout
    inputs = _bind(net, layout, args, kwargs)
    like = net.like
    batch, time = _shapes(layout, inputs, like)
    if any(name in inputs for name in layout.sequences):
        if steps is not None and steps != time:
            raise ValueError(f"steps={steps} but the sequence inputs have {time} steps; leave steps out")
    else:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            what = "no sequence input" if not layout.fed else "no sequence input given"
            raise ValueError(f"network `{net.network.name}` has {what}: give steps=N (N >= 1), got steps={steps!r}")
        time = steps
    if batch is None and batch_size is None:
        batch = _state_batch(state)  # a carried state knows its batch size
    if batch is None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(
                f"network `{net.network.name}` has no input to tell the batch size: give batch=N "
                f"(N >= 1), got batch={batch_size!r}"
            )
        batch = batch_size
    elif batch_size is not None and batch_size != batch:
        raise ValueError(f"batch={batch_size} but the inputs have batch size {batch}; leave batch out")
    checked_lengths = None if lengths is None else _lengths(lengths, batch, time, like.device)
    checked_state = None if state is None else _state(net, state, batch, like)
    memories = _memory_lengths(net, layout, inputs, memory_lengths, batch, like.device)
    return Call(inputs, batch, time, checked_lengths, checked_state, memories, layout.memories)


def _memory_lengths(
    net: CompiledNetwork, layout: Layout, inputs: dict[str, torch.Tensor], given: Any, batch: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """`memory_lengths={"enc": n}`: how many positions of each memory input count, (batch,) each."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ValueError(
            f"memory_lengths: expected a dict by memory input ({', '.join(layout.memories) or 'none'}), "
            f"got {type(given).__name__}"
        )
    out = {}
    for name, n in given.items():
        if name not in layout.memories:
            hint = did_you_mean(str(name), list(layout.memories))
            raise ValueError(
                f"memory_lengths: `{name}` is not a memory input of network `{net.network.name}`; its memory "
                f"inputs are: {', '.join(layout.memories) or 'none'}" + (f" ({hint})" if hint else "")
            )
        if n is None:
            continue
        positions = inputs[name].shape[1]
        if not isinstance(n, torch.Tensor):
            n = torch.as_tensor(n)
        if n.dtype.is_floating_point or n.dtype == torch.bool or n.shape != (batch,):
            raise ValueError(
                f"memory_lengths[{name!r}]: expected (batch,) = ({batch},) integers, got {n.dtype} of shape "
                f"{tuple(n.shape)}"
            )
        low, high = _range(n)
        if low < 1 or high > positions:
            raise ValueError(
                f"memory_lengths[{name!r}]: every length must lie in [1, {positions}] (the positions of memory "
                f"`{name}`), got values from {low} to {high}"
            )
        out[name] = n.to(device=device, dtype=torch.long)
    return out


def _state_batch(state: Any) -> int | None:
    """The batch size of a carried state (node -> (batch, k, size)), when it holds a tensor; `_state`
    checks every entry against it."""
    if isinstance(state, Mapping):
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.dim() >= 1:
                return int(value.shape[0])
    return None


def _bind(
    net: CompiledNetwork, layout: Layout, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, torch.Tensor]:
    names = layout.names
    inputs = dict(kwargs)
    if args:
        seq = layout.sequences
        if len(args) > 1 or len(seq) != 1:
            raise ValueError(
                f"network `{net.network.name}` takes its inputs by name ({', '.join(names)}); "
                f"got {len(args)} positional argument(s)"
            )
        if seq[0] in inputs:
            raise ValueError(f"input `{seq[0]}` given twice: positionally and by name")
        inputs[seq[0]] = args[0]
    for name in inputs:
        if name not in names:
            hint = did_you_mean(name, list(names))
            raise ValueError(
                f"unknown input `{name}`; network `{net.network.name}` takes: {', '.join(names)}"
                + (f" ({hint})" if hint else "")
            )
    fed = layout.fed  # not given: the network feeds itself
    missing = [n for n in names if n not in inputs and n not in fed]
    if missing:
        raise ValueError(
            f"missing input{'s' if len(missing) > 1 else ''} {', '.join(f'`{m}`' for m in missing)} "
            f"for network `{net.network.name}`"
        )
    for name, value in inputs.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"input `{name}`: expected a torch.Tensor, got {type(value).__name__}")
    return inputs


def _shapes(layout: Layout, inputs: dict[str, torch.Tensor], like: torch.Tensor) -> tuple[int | None, int]:
    batch: tuple[str, int] | None = None
    time: tuple[str, int] | None = None
    device = like.device
    for node in layout.inputs:
        if node.name not in inputs:
            continue  # a self-fed input left to run free
        x = inputs[node.name]
        if node.input_kind == "tokens":
            _expect(node.name, x, 2, "(batch, time) integer token ids", integer=True)
            x = inputs[node.name] = _token_ids(node, x)
        elif node.input_kind == "seq":
            if x.dim() != 3 or x.dtype != like.dtype or x.shape[2] != node.size:  # the message only where one is due
                _expect(node.name, x, 3, f"(batch, time, {node.size})", like=like)
                _size(node.name, x, node.size, f"(batch, time, {node.size})")
        elif node.input_kind == "memory":
            shape = f"(batch, positions, {node.size}) (a memory)"
            _expect(node.name, x, 3, shape, like=like)
            _size(node.name, x, node.size, shape)
            if x.shape[1] == 0:
                raise ValueError(f"memory `{node.name}` has 0 positions; attention needs at least one")
        elif x.dim() != 2 or x.dtype != like.dtype or x.shape[1] != node.size:
            _expect(node.name, x, 2, f"(batch, {node.size}) (a static input)", like=like)
            _size(node.name, x, node.size, f"(batch, {node.size})")
        if x.device != device:
            raise ValueError(
                f"input `{node.name}` is on {x.device} but the network is on {device}; "
                f"move it with .to({str(device)!r})"
            )
        if batch is not None and x.shape[0] != batch[1]:
            raise ValueError(
                f"batch sizes differ: input `{batch[0]}` has {batch[1]} but `{node.name}` has {x.shape[0]}"
            )
        batch = batch or (node.name, x.shape[0])
        if node.input_kind not in ("static", "memory"):
            if time is not None and x.shape[1] != time[1]:
                raise ValueError(
                    f"sequence lengths differ: input `{time[0]}` has {time[1]} steps but `{node.name}` has {x.shape[1]}"
                )
            if x.shape[1] == 0:
                raise ValueError(f"input `{node.name}` has 0 steps; a sequence needs at least one")
            time = time or (node.name, x.shape[1])
    return (batch[1] if batch else None), (time[1] if time else 0)


def _token_ids(node: Node, x: torch.Tensor) -> torch.Tensor:
    """A token input's ids as int64 (any integer dtype will do; the kernels take int64), checked to lie in range."""
    x = x.long()
    # torch.export traces with no values to look at: an exported program takes the ids as they come
    if not torch.compiler.is_exporting() and x.numel() and (int(x.min()) < 0 or int(x.max()) >= node.size):
        raise ValueError(
            f"input `{node.name}`: token ids must lie in [0, {node.size}), got values from "
            f"{int(x.min())} to {int(x.max())}"
        )
    return x


def _expect(
    name: str, x: torch.Tensor, rank: int, shape: str, integer: bool = False, like: torch.Tensor | None = None
) -> None:
    if x.dim() != rank:
        raise ValueError(f"input `{name}`: expected {shape}, got a tensor of shape {tuple(x.shape)}")
    if integer and (x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool):
        raise ValueError(f"input `{name}`: expected integer token ids (int64), got {x.dtype}")
    if like is not None and x.dtype != like.dtype:
        raise ValueError(
            f"input `{name}`: expected {like.dtype} (the network's dtype), got {x.dtype}; "
            f"convert it with .to({like.dtype})"
        )


def _size(name: str, x: torch.Tensor, size: int, shape: str) -> None:
    if x.shape[-1] != size:
        raise ValueError(f"input `{name}`: expected {shape}, got size {x.shape[-1]} in shape {tuple(x.shape)}")


def _lengths(lengths: Any, batch: int, time: int, device: torch.device) -> torch.Tensor | None:
    if lengths is None:
        return None
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.shape != (batch,):
        raise ValueError(
            f"lengths: expected (batch,) = ({batch},) integers, got {lengths.dtype} of shape {tuple(lengths.shape)}"
        )
    low, high = _range(lengths)
    if low < 1 or high > time:
        raise ValueError(
            f"lengths: every length must lie in [1, {time}] (the time axis), got values from {low} to {high}"
        )
    return lengths.to(device=device, dtype=torch.long)


def _state(net: CompiledNetwork, state: Any, batch: int, like: torch.Tensor) -> Mapping[str, torch.Tensor] | None:
    if state is None:
        return None
    layout = net.layout
    if layout.reads_future:
        raise ValueError(
            f"network `{net.network.name}` reads the future ([t+k]), so it cannot continue from a "
            "state: give it whole sequences"
        )
    signature = getattr(state, "signature", None)
    if signature is not None and signature != net.signature:
        other = signature.split("/")[0]
        if other == net.network.name:
            raise ValueError(
                f"state comes from another version of network `{other}`: its nodes, sizes or "
                "delays differ from this one's"
            )
        raise ValueError(f"state comes from another network ({other}), not `{net.network.name}`")
    if not isinstance(state, Mapping):
        raise ValueError(f"state: expected the `.state` of an earlier call, got {type(state).__name__}")
    past = layout.past  # each node read at [t-k], with its deepest k
    if len(state) != len(past) or any(node.name not in state for node, _ in past):
        wanted = sorted(node.name for node, _ in past)
        raise ValueError(f"state: expected values for {', '.join(wanted)}, got {', '.join(sorted(state))}")
    for node, k in past:
        shape = (batch, k) if node.is_tokens else (batch, k, node.size)
        value = state[node.name]
        if not isinstance(value, torch.Tensor) or value.shape != shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"state `{node.name}`: expected shape {shape}, got {got}")
        dtype = torch.long if node.is_tokens else like.dtype
        if value.dtype != dtype or value.device != like.device:
            raise ValueError(
                f"state `{node.name}`: expected {dtype} on {like.device}, got {value.dtype} on {value.device}"
            )
    return state


def _range(lengths: torch.Tensor) -> tuple[int, int]:
    """The smallest and largest length, for the checks; (1, 1) when torch.export traces the call (it has no
    values to look at: an exported program takes lengths as they come) or there are none."""
    if torch.compiler.is_exporting() or not lengths.numel():
        return 1, 1
    return int(lengths.min()), int(lengths.max())
