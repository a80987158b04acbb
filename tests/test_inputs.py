"""Every wrong call gives a ValueError that names the input, says what was expected and what came."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

import rnndsl
from rnndsl.runtime.network import CompiledNetwork, State
from rnndsl.runtime.reference import reference

EXAMPLES = Path(__file__).parent.parent / "examples"

MIXED = """network N {
    input x: 3
    input w: tokens(5)
    input s: 2 static
    layer h: 4 tanh <- x, w, s, h[t-1]
    c = h * c[t-1] + h
    o = one_hot(w) * 2
    output h
    output o
}"""
ELMAN = "network Elman { input x: 3\n layer h: 4 tanh <- x, h[t-1]\n output h }"
NO_SEQUENCE = "network Free { input s: 2 static\n layer h: 4 tanh <- s, h[t-1]\n output h }"
B, T = 2, 5


@pytest.fixture(scope="module")
def mixed() -> CompiledNetwork:
    return rnndsl.compile(MIXED)


@pytest.fixture(scope="module")
def elman() -> CompiledNetwork:
    return rnndsl.compile(ELMAN)


def good() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(B, T, 3, generator=gen),
        "w": torch.randint(0, 5, (B, T), generator=gen),
        "s": torch.randn(B, 2, generator=gen),
    }


def fails(net: CompiledNetwork, message: str, *args: Any, **kwargs: Any) -> None:
    """The call raises ValueError with exactly this message."""
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        net(*args, **kwargs)


def test_good_call_runs(mixed: CompiledNetwork) -> None:
    out = mixed(**good())
    assert out.h.shape == (B, T, 4) and out.o.shape == (B, T, 5)


# ---- binding: which inputs came ---------------------------------------------------------------------


def test_missing_inputs(mixed: CompiledNetwork) -> None:
    call = good()
    del call["s"]
    fails(mixed, "missing input `s` for network `N`", **call)
    del call["w"]
    fails(mixed, "missing inputs `w`, `s` for network `N`", **call)


def test_unknown_input_with_did_you_mean(mixed: CompiledNetwork) -> None:
    fails(mixed, "unknown input `xx`; network `N` takes: x, w, s (did you mean `x`?)", **good(), xx=torch.zeros(1))
    fails(mixed, "unknown input `banana`; network `N` takes: x, w, s", **good(), banana=torch.zeros(1))


def test_positional_and_keyword_duplicate(elman: CompiledNetwork) -> None:
    x = good()["x"]
    fails(elman, "input `x` given twice: positionally and by name", x, x=x)


def test_several_positional_arguments(elman: CompiledNetwork, mixed: CompiledNetwork) -> None:
    x = good()["x"]
    fails(elman, "network `Elman` takes its inputs by name (x); got 2 positional argument(s)", x, x)
    # with two sequence inputs, even one positional argument is ambiguous
    fails(mixed, "network `N` takes its inputs by name (x, w, s); got 1 positional argument(s)", x)


def test_not_a_tensor(mixed: CompiledNetwork) -> None:
    fails(mixed, "input `x`: expected a torch.Tensor, got list", **good() | {"x": [[0.0] * 3] * T})
    fails(mixed, "input `s`: expected a torch.Tensor, got ndarray", **good() | {"s": good()["s"].numpy()})


# ---- shapes and dtypes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("x", torch.randn(B, T), "input `x`: expected (batch, time, 3), got a tensor of shape (2, 5)"),
        ("x", torch.randn(1, B, T, 3), "input `x`: expected (batch, time, 3), got a tensor of shape (1, 2, 5, 3)"),
        ("s", torch.randn(2), "input `s`: expected (batch, 2) (a static input), got a tensor of shape (2,)"),
        ("s", torch.randn(B, T, 2), "input `s`: expected (batch, 2) (a static input), got a tensor of shape (2, 5, 2)"),
        ("w", torch.tensor(1), "input `w`: expected (batch, time) integer token ids, got a tensor of shape ()"),
        (
            "w",
            torch.zeros(B, T, 5, dtype=torch.long),
            "input `w`: expected (batch, time) integer token ids, got a tensor of shape (2, 5, 5)",
        ),
    ],
    ids=["x-rank2", "x-rank4", "s-rank1", "s-rank3", "w-rank0", "w-rank3"],
)
def test_wrong_rank(mixed: CompiledNetwork, name: str, value: torch.Tensor, message: str) -> None:
    fails(mixed, message, **good() | {name: value})


def test_wrong_size(mixed: CompiledNetwork) -> None:
    fails(
        mixed,
        "input `x`: expected (batch, time, 3), got size 4 in shape (2, 5, 4)",
        **good() | {"x": torch.randn(B, T, 4)},
    )
    fails(mixed, "input `s`: expected (batch, 2), got size 3 in shape (2, 3)", **good() | {"s": torch.randn(B, 3)})


def test_wrong_dtype(mixed: CompiledNetwork) -> None:
    fails(
        mixed,
        "input `x`: expected torch.float32 (the network's dtype), got torch.float64; convert it with "
        ".to(torch.float32)",
        **good() | {"x": torch.randn(B, T, 3, dtype=torch.float64)},
    )
    fails(
        mixed,
        "input `s`: expected torch.float32 (the network's dtype), got torch.int64; convert it with .to(torch.float32)",
        **good() | {"s": torch.ones(B, 2, dtype=torch.long)},
    )
    fails(
        mixed, "input `w`: expected integer token ids (int64), got torch.float32", **good() | {"w": torch.zeros(B, T)}
    )
    fails(
        mixed,
        "input `w`: expected integer token ids (int64), got torch.bool",
        **good() | {"w": torch.zeros(B, T, dtype=torch.bool)},
    )


def test_dtype_follows_the_module() -> None:
    double = rnndsl.compile(MIXED).double()
    fails(
        double,
        "input `x`: expected torch.float64 (the network's dtype), got torch.float32; convert it with "
        ".to(torch.float64)",
        **good(),
    )


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.int8, torch.uint8])
def test_token_ids_of_another_integer_dtype(mixed: CompiledNetwork, dtype: torch.dtype) -> None:
    """Any integer dtype is read as int64 ids (embedding and one_hot alike)."""
    call = good()
    call["w"] = call["w"].to(dtype)
    out, expected = mixed(**call), mixed(**good())
    assert torch.equal(out.h, expected.h) and torch.equal(out.o, expected.o)


def test_token_ids_out_of_range(mixed: CompiledNetwork) -> None:
    w = good()["w"]
    w[0, 0] = -1
    fails(mixed, f"input `w`: token ids must lie in [0, 5), got values from -1 to {int(w.max())}", **good() | {"w": w})
    w = good()["w"]
    w[1, 3] = 5
    fails(mixed, f"input `w`: token ids must lie in [0, 5), got values from {int(w.min())} to 5", **good() | {"w": w})


# ---- batch and time ---------------------------------------------------------------------------------------


def test_batch_sizes_differ(mixed: CompiledNetwork) -> None:
    fails(
        mixed,
        "batch sizes differ: input `x` has 2 but `w` has 3",
        **good() | {"w": torch.zeros(3, T, dtype=torch.long)},
    )
    fails(mixed, "batch sizes differ: input `x` has 2 but `s` has 1", **good() | {"s": torch.randn(1, 2)})


def test_sequence_lengths_differ(mixed: CompiledNetwork) -> None:
    fails(
        mixed,
        "sequence lengths differ: input `x` has 5 steps but `w` has 4",
        **good() | {"w": torch.zeros(B, 4, dtype=torch.long)},
    )


def test_zero_steps(elman: CompiledNetwork) -> None:
    fails(elman, "input `x` has 0 steps; a sequence needs at least one", torch.zeros(B, 0, 3))


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        (torch.tensor([5, 0]), "lengths: every length must lie in [1, 5] (the time axis), got values from 0 to 5"),
        (torch.tensor([-2, 3]), "lengths: every length must lie in [1, 5] (the time axis), got values from -2 to 3"),
        (torch.tensor([6, 3]), "lengths: every length must lie in [1, 5] (the time axis), got values from 3 to 6"),
        (torch.tensor([5, 3, 2]), "lengths: expected (batch,) = (2,) integers, got torch.int64 of shape (3,)"),
        (torch.tensor([[5], [3]]), "lengths: expected (batch,) = (2,) integers, got torch.int64 of shape (2, 1)"),
        (torch.tensor(5), "lengths: expected (batch,) = (2,) integers, got torch.int64 of shape ()"),
        (torch.tensor([5.0, 3.0]), "lengths: expected (batch,) = (2,) integers, got torch.float32 of shape (2,)"),
        (torch.tensor([True, True]), "lengths: expected (batch,) = (2,) integers, got torch.bool of shape (2,)"),
    ],
    ids=["zero", "negative", "past-T", "too-many", "column", "scalar", "float", "bool"],
)
def test_bad_lengths(mixed: CompiledNetwork, lengths: torch.Tensor, message: str) -> None:
    fails(mixed, message, **good(), lengths=lengths)


def test_lengths_as_a_list_or_int32_are_accepted(mixed: CompiledNetwork) -> None:
    expected = mixed(**good(), lengths=torch.tensor([5, 3]))
    torch.testing.assert_close(mixed(**good(), lengths=[5, 3]).h, expected.h)
    torch.testing.assert_close(mixed(**good(), lengths=torch.tensor([5, 3], dtype=torch.int32)).h, expected.h)


def test_empty_batch_with_lengths(mixed: CompiledNetwork) -> None:
    call = {k: v[:0] for k, v in good().items()}
    assert mixed(**call).h.shape == (0, T, 4)
    assert mixed(**call, lengths=torch.zeros(0, dtype=torch.long)).h.shape == (0, T, 4)


# ---- steps -------------------------------------------------------------------------------------------------


def test_network_without_sequence_inputs_needs_steps() -> None:
    net = rnndsl.compile(NO_SEQUENCE)
    s = torch.randn(B, 2)
    assert net(s=s, steps=3).h.shape == (B, 3, 4)
    fails(net, "network `Free` has no sequence input: give steps=N (N >= 1), got steps=None", s=s)
    fails(net, "network `Free` has no sequence input: give steps=N (N >= 1), got steps=0", s=s, steps=0)
    fails(net, "network `Free` has no sequence input: give steps=N (N >= 1), got steps=2.5", s=s, steps=2.5)
    fails(net, "network `Free` has no sequence input: give steps=N (N >= 1), got steps=True", s=s, steps=True)


def test_steps_that_contradict_the_inputs(mixed: CompiledNetwork) -> None:
    assert mixed(**good(), steps=T).h.shape == (B, T, 4)
    fails(mixed, "steps=4 but the sequence inputs have 5 steps; leave steps out", **good(), steps=4)


# ---- state ---------------------------------------------------------------------------------------------------


def test_state_from_another_network(mixed: CompiledNetwork, elman: CompiledNetwork) -> None:
    other = elman(good()["x"]).state
    fails(mixed, "state comes from another network (Elman), not `N`", **good(), state=other)


def test_state_with_wrong_keys(mixed: CompiledNetwork) -> None:
    state = mixed(**good()).state
    assert state is not None and set(state) == {"h", "c"}
    fails(mixed, "state: expected values for c, h, got h", **good(), state={"h": state["h"]})
    fails(mixed, "state: expected values for c, h, got c, h, zz", **good(), state=dict(state) | {"zz": state["h"]})


def test_state_with_wrong_shapes(mixed: CompiledNetwork) -> None:
    state = dict(mixed(**good()).state or {})
    fails(mixed, "state `h`: expected shape (2, 1, 4), got (2, 4)", **good(), state=state | {"h": state["h"][:, 0]})
    fails(mixed, "state `c`: expected shape (2, 1, 4), got list", **good(), state=state | {"c": [0.0]})
    call = {k: v[:1] for k, v in good().items()}
    fails(mixed, "state `h`: expected shape (1, 1, 4), got (2, 1, 4)", **call, state=state)


def test_state_that_is_not_a_mapping(mixed: CompiledNetwork) -> None:
    fails(mixed, "state: expected the `.state` of an earlier call, got Tensor", **good(), state=torch.zeros(B, 1, 4))


def test_state_with_wrong_dtype(mixed: CompiledNetwork) -> None:
    state = mixed(**good()).state
    assert state is not None
    wrong = State(dict(state) | {"c": state["c"].double()}, state.signature)
    fails(mixed, "state `c`: expected torch.float32 on cpu, got torch.float64 on cpu", **good(), state=wrong)
    fails(
        mixed,
        "state `h`: expected torch.float32 on cpu, got torch.int64 on cpu",
        **good(),
        state=dict(state) | {"h": state["h"].long()},
    )


def test_token_state_must_be_int64() -> None:
    net = rnndsl.compile("network Tok { input w: tokens(5)\n layer h: 3 tanh <- w, w[t-1]\n output h }")
    w = good()["w"]
    state = net(w).state
    assert state is not None and state["w"].dtype == torch.int64 and state["w"].shape == (B, 1)
    fails(net, "state `w`: expected torch.int64 on cpu, got torch.float32 on cpu", w, state={"w": state["w"].float()})


# ---- picking a network -------------------------------------------------------------------------------------


def test_several_networks_need_a_name() -> None:
    path = EXAMPLES / "stacked.rnn"
    with pytest.raises(
        ValueError, match=re.escape(f"{path} holds several networks (Cell, Stacked); pick one with network=NAME")
    ):
        rnndsl.compile(path)
    with pytest.raises(
        ValueError, match=re.escape("has no network or model `Stacke`; it has: Cell, Stacked (did you mean `Stacked`?)")
    ):
        rnndsl.compile(path, network="Stacke")
    assert rnndsl.compile(path, network="Stacked").network.name == "Stacked"


def test_network_with_no_inputs_takes_a_batch_size() -> None:
    net = rnndsl.compile("network Z { layer h: 3 tanh <- h[t-1]\n init h = learned\n output h }")
    fails(net, "network `Z` has no input to tell the batch size: give batch=N (N >= 1), got batch=None", steps=3)
    out = net(steps=3, batch=2)
    assert out.h.shape == (2, 3, 3)
    torch.testing.assert_close(out.h[0], out.h[1])
    torch.testing.assert_close(out.h, reference(net, steps=3, batch=2).h)


def test_state_from_an_edited_network() -> None:
    spec = "network N { input x: 3\n layer h: %d tanh <- x, h[t-1]\n output h }"
    old, new = rnndsl.compile(spec % 4), rnndsl.compile(spec % 5)
    x = torch.randn(2, 4, 3)
    fails(
        new,
        "state comes from another version of network `N`: its nodes, sizes or delays differ from this one's",
        x=x,
        state=old(x).state,
    )
