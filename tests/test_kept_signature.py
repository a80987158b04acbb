"""A call given only inputs (and perhaps a state) skips `validate` where it matches the last such call's signature
(`rnndsl.runtime.validate.Signature`): the same checks must hold, the same numbers come out, and a call that differs
in anything is validated in full."""

from __future__ import annotations

import copy
import pickle
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from test_inputs import ELMAN, MIXED  # the network of every input kind, and a plain one

import rnndsl
from rnndsl.runtime import network as network_module
from rnndsl.runtime.network import CompiledNetwork, State

B, T = 2, 3


def good(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(B, T, 3, generator=gen),
        "w": torch.randint(0, 5, (B, T), generator=gen),
        "s": torch.randn(B, 2, generator=gen),
    }


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls of `validate` that `CompiledNetwork.forward` makes."""
    count = [0]
    validate = network_module.validate

    def counted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return validate(*args, **kwargs)

    monkeypatch.setattr(network_module, "validate", counted)
    return count


def test_matching_calls_skip_validation(validations: list[int]) -> None:
    net = rnndsl.compile(MIXED)
    with torch.no_grad():
        out = net(**good())
        for seed in range(1, 4):  # other values, the same signature
            net(**good(seed))
        assert validations[0] == 1
        state = out.state
        for seed in range(4):  # streaming: a state of the same layout each call
            state = net(**good(seed), state=state).state
        assert validations[0] == 2  # the first call with a state is another signature
        net(**good(), steps=T)  # an option: validated, and kept signatures are left alone
        net(**dict(reversed(good().items())))  # inputs named in another order: another signature
        assert validations[0] == 4


def test_positional_input_streams_without_validation(validations: list[int]) -> None:
    net = rnndsl.compile(ELMAN)
    x = torch.randn(B, 10, 3)
    whole = net(x).h
    state, parts = None, []
    for t in range(10):  # the first two calls differ (no state, then a state); the rest match
        out = net(x[:, t : t + 1], state=state)
        state, parts = out.state, [*parts, out.h]
    assert validations[0] == 3
    torch.testing.assert_close(torch.cat(parts, 1), whole, rtol=0, atol=1e-6)


def test_the_skipped_checks_give_the_same_numbers() -> None:
    """A call on the kept signature computes what a freshly validated call computes, on new values each time
    (nothing of the inputs is kept), with gradients."""
    net = rnndsl.compile(MIXED)
    fresh = copy.deepcopy(net)
    net(**good())
    for seed in range(1, 4):
        inputs = good(seed)
        kept_path, full_path = net(**inputs), fresh(**inputs)
        fresh.__dict__.pop("_seen")  # the copy validates every call
        for name in ("h", "o"):
            torch.testing.assert_close(kept_path[name], full_path[name], rtol=0, atol=0)
        kept_path.h.sum().backward()
        full_path.h.sum().backward()
    for a, b in zip(net.parameters(), fresh.parameters(), strict=True):
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


Case = Callable[[CompiledNetwork, CompiledNetwork], tuple[dict[str, Any], dict[str, Any]]]


def _state(net: CompiledNetwork) -> State:
    state = net(**good()).state
    assert state is not None
    return state


BAD: dict[str, Case] = {  # (a good call, a bad call that differs from it in one thing)
    "dtype": lambda net, other: (good(), good() | {"x": good()["x"].double()}),
    "size": lambda net, other: (good(), good() | {"x": torch.randn(B, T, 4)}),
    "device": lambda net, other: (good(), good() | {"x": good()["x"].to("meta")}),
    "rank": lambda net, other: (good(), good() | {"s": torch.randn(B, 1, 2)}),
    "batch": lambda net, other: (good(), good() | {"s": torch.randn(B + 1, 2)}),
    "token range": lambda net, other: (good(), good() | {"w": torch.full((B, T), 5)}),
    "negative token": lambda net, other: (good(), good() | {"w": torch.full((B, T), -1)}),
    "float tokens": lambda net, other: (good(), good() | {"w": good()["w"].float()}),
    "not a tensor": lambda net, other: (good(), good() | {"s": [[0.0, 1.0]] * B}),
    "missing": lambda net, other: (good(), {k: v for k, v in good().items() if k != "s"}),
    "unknown": lambda net, other: (good(), good() | {"q": torch.zeros(1)}),
    "state of another network": lambda net, other: (
        good() | {"state": _state(net)},
        good() | {"state": other(torch.randn(B, T, 3)).state},
    ),
    "state shape": lambda net, other: (
        good() | {"state": _state(net)},
        good() | {"state": State(dict(_state(net)) | {"h": torch.zeros(B, 2, 4)}, net.signature)},
    ),
    "state dtype": lambda net, other: (
        good() | {"state": _state(net)},
        good() | {"state": State(dict(_state(net)) | {"c": torch.zeros(B, 1, 4).double()}, net.signature)},
    ),
    "state keys": lambda net, other: (
        good() | {"state": _state(net)},
        good() | {"state": State({"h": torch.zeros(B, 1, 4)}, net.signature)},
    ),
    "state entry not a tensor": lambda net, other: (
        good() | {"state": _state(net)},
        good() | {"state": State(dict(_state(net)) | {"c": [0.0]}, net.signature)},
    ),
    "state from a network of the same nodes": lambda net, other: (
        good() | {"state": _state(net)},
        good() | {"state": State(dict(_state(net)), rnndsl.compile(MIXED.replace("network N", "network M")).signature)},
    ),
    "state with an extra entry": lambda net, other: (
        good() | {"state": _state(net)},
        good() | {"state": State(dict(_state(net)) | {"zz": torch.zeros(B, 1, 4)}, net.signature)},
    ),
    "a tensor for a state": lambda net, other: (
        good() | {"state": _state(net)},
        good() | {"state": torch.zeros(B, 1, 4)},
    ),
    "batch that contradicts the inputs": lambda net, other: (good(), good() | {"batch": B + 1}),
    "steps that contradict the inputs": lambda net, other: (good(), good() | {"steps": T + 1}),
    "bad lengths": lambda net, other: (good(), good() | {"lengths": torch.tensor([T + 1, 1])}),
}


def _error(net: CompiledNetwork, call: dict[str, Any]) -> str:
    with pytest.raises(ValueError) as caught:
        net(**call)
    return str(caught.value)


@pytest.mark.parametrize("case", list(BAD))
def test_a_call_that_differs_is_checked_in_full(case: str) -> None:
    """After good calls have kept a signature, a bad call that differs from them in one thing fails with the message
    a network that kept nothing gives."""
    torch.manual_seed(0)
    net, other = rnndsl.compile(MIXED), rnndsl.compile(ELMAN)
    good_call, bad_call = BAD[case](net, other)
    expected = _error(rnndsl.compile(MIXED), bad_call)
    net(**good_call)
    net(**good_call)
    assert net.__dict__.get("_seen") is not None
    assert _error(net, bad_call) == expected


def test_token_ids_of_another_dtype_keep_their_signature(validations: list[int]) -> None:
    net = rnndsl.compile(MIXED)
    call = good() | {"w": good()["w"].int()}
    first, second = net(**call), net(**call)
    assert validations[0] == 1
    torch.testing.assert_close(first.h, second.h, rtol=0, atol=0)
    torch.testing.assert_close(first.h, net(**good()).h, rtol=0, atol=0)


def test_a_moved_or_converted_network_checks_again() -> None:
    net = rnndsl.compile(ELMAN)
    x = torch.randn(B, T, 3)
    net(x)
    twin = copy.deepcopy(net).double()  # converted before any call
    net.double()
    with pytest.raises(ValueError, match=re.escape("expected torch.float64")):
        net(x)
    torch.testing.assert_close(net(x.double()).h, twin(x.double()).h, rtol=0, atol=0)


def test_inference_mode_streams_as_no_grad() -> None:
    net = rnndsl.compile(ELMAN)
    x = torch.randn(B, 6, 3)
    runs = []
    for mode in (torch.no_grad, torch.inference_mode):
        state, parts = None, []
        with mode():
            for t in range(6):
                out = net(x[:, t : t + 1], state=state)
                state, parts = out.state, [*parts, out.h]
        runs.append(torch.cat(parts, 1))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_copies_and_pickles_keep_no_signature() -> None:
    net = rnndsl.compile(ELMAN)
    x = torch.randn(B, T, 3)
    expected = net(x).h
    for twin in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert "_seen" not in twin.__dict__
        torch.testing.assert_close(twin(x).h, expected, rtol=0, atol=0)
        with pytest.raises(ValueError, match="expected \\(batch, time, 3\\)"):
            twin(torch.randn(B, T, 4))


def test_a_functional_call_checks_its_own_buffers() -> None:
    """torch.func.functional_call swaps the module's tensors in; the kept signature belongs to the module's own."""
    net = rnndsl.compile(ELMAN)
    x = torch.randn(B, T, 3)
    net(x)
    doubled = {k: v.double() for k, v in net.named_parameters()} | {"_like": net.like.double()}
    out = torch.func.functional_call(net, doubled, (x.double(),))
    assert out.h.dtype == torch.float64
    with pytest.raises(ValueError, match=re.escape("expected torch.float64")):
        torch.func.functional_call(net, doubled, (x,))


FED = """network G {
    input x: 3
    input w: tokens(5) = sample(softmax(y[t-1]))
    layer h: 4 tanh <- x, w, h[t-1]
    layer y: 5 <- h
    output y
}"""


def test_self_fed_inputs_after_kept_calls() -> None:
    """A self-fed input left out runs free at every call (nothing kept), and options that change what is fed
    (`feed_back`) are honoured after teacher-forced calls kept a signature."""
    net = rnndsl.compile(FED)
    fresh = copy.deepcopy(net)
    x, w = torch.randn(B, T, 3), torch.randint(0, 5, (B, T))
    net(x=x, w=w), net(x=x, w=w)  # teacher-forced: kept
    for options in ({}, {"w": w, "feed_back": 1.0}, {"w": w, "feed_back": 0.5}, {"w": w}):
        torch.manual_seed(1)
        out = net(x=x, **options)
        torch.manual_seed(1)
        expected = fresh(x=x, **options)
        fresh.__dict__.pop("_seen", None)
        torch.testing.assert_close(out.y, expected.y, rtol=0, atol=0)
        assert sorted(out.fed) == sorted(expected.fed) == ([] if options == {"w": w} else ["w"])
    free = net(x=x), net(x=x)  # free twice: fed each time
    assert all(out.fed["w"].shape == (B, T) for out in free)


def test_options_after_kept_calls_give_what_a_fresh_network_gives() -> None:
    attention = """network A {
        input  x: 3
        input  enc: 4 memory
        layer  q: 4 <- x
        c = attend(dot(q, enc), enc)
        layer  h: 4 tanh <- x, c, h[t-1]
        output h
    }"""
    net = rnndsl.compile(attention)
    fresh = copy.deepcopy(net)
    x, enc = torch.randn(B, T, 3), torch.randn(B, 5, 4)
    net(x=x, enc=enc), net(x=x, enc=enc)
    for options in (
        {"lengths": torch.tensor([T, 1])},
        {"memory_lengths": {"enc": torch.tensor([2, 5])}},
        {"check_finite": True},
        {},
    ):
        out, expected = net(x=x, enc=enc, **options), fresh(x=x, enc=enc, **options)
        fresh.__dict__.pop("_seen", None)
        torch.testing.assert_close(out.h, expected.h, rtol=0, atol=0)
        torch.testing.assert_close(out.attention["c"], expected.attention["c"], rtol=0, atol=0)


def test_a_compiled_call_after_kept_eager_calls() -> None:
    """torch.compile traces the full path (a kept signature is Python state a graph cannot hold)."""
    net = rnndsl.compile(ELMAN)
    x = torch.randn(B, T, 3)
    expected = net(x).h
    net(x)
    compiled = torch.compile(net, backend="eager", fullgraph=False)
    torch.testing.assert_close(compiled(x).h, expected)  # its loop is autograd's, not the generated backward's
    torch.testing.assert_close(net(x).h, expected, rtol=0, atol=0)


def test_functional_call_of_another_dtype_after_kept_calls() -> None:
    """Kept float32 calls, then `functional_call` swapping float64 tensors in: a float32 input is refused with
    the dtype message (the kept signature belongs to the module's own `like`)."""
    net = rnndsl.compile(ELMAN)
    x = torch.randn(B, T, 3)
    net(x), net(x)
    doubled = {k: v.double() for k, v in net.named_parameters()} | {"_like": net.like.double()}
    with pytest.raises(ValueError, match=re.escape("expected torch.float64")):
        torch.func.functional_call(net, doubled, (x,))


def test_inference_mode_calls_skip_validation_and_leave_grad_calls_working(validations: list[int]) -> None:
    net = rnndsl.compile(ELMAN)
    x = torch.randn(B, T, 3)
    with torch.inference_mode():
        first = [net(x).h for _ in range(3)]
    assert validations[0] == 1
    out = net(x).h  # autograd records: start values made outside inference mode
    out.sum().backward()
    torch.testing.assert_close(out.detach(), first[0], rtol=0, atol=0)
