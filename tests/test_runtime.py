"""The compiled module at run time: padding, state, dtypes and devices, serialization, introspection."""

from __future__ import annotations

import copy
import io
import itertools
import pickle
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import rnndsl
from rnndsl.runtime.network import CompiledNetwork, Outputs, State
from rnndsl.runtime.reference import reference

EXAMPLES = Path(__file__).parent.parent / "examples"

ELMAN = """network Elman {
    input  x: 3
    layer  h: 4 tanh <- x, h[t-1]
    layer  y: 2 <- h
    output y
    output h last
}"""
LSTM = """network LSTM {
    input  x: 3
    layer  i: 4 sigmoid <- x, h[t-1]
    layer  f: 4 sigmoid <- x, h[t-1]
    layer  g: 4 tanh    <- x, h[t-1]
    layer  o: 4 sigmoid <- x, h[t-1]
    c = f * c[t-1] + i * g
    h = o * tanh(c)
    output h
    output c last
}"""
SKIP2 = """network Skip2 {
    input  x: 3
    layer  h: 4 tanh <- x, h[t-1], h[t-2]
    y = h + 0.5 * h[t-2]
    output y
    output h last
}"""
JORDAN = """network Jordan {
    input  x: 3
    layer  h: 4 tanh <- x, y[t-1]
    layer  y: 3 softmax <- h
    init   y = learned
    output y
}"""
TOKENS = """network Tok {
    input  w: tokens(5)
    input  s: 2 static
    layer  h: 4 tanh <- w, w[t-1], s, h[t-1]
    init   h = s
    output h
}"""
BIDIR = """network Bi {
    input  x: 3
    layer  f: 3 tanh <- x, f[t-1]
    layer  b: 3 tanh <- x, b[t+1]
    layer  b2: 2 tanh <- x, b2[t+2], f[t+1]
    init   b2 = learned
    y = concat(f, b, b2)
    output y
    output b last
    output f last
}"""

B, T = 4, 6


def compile64(spec: str, device: torch.device | str = "cpu", fuse: bool = True) -> CompiledNetwork:
    net = rnndsl.compile(spec, fuse_cells=fuse).to(device, torch.float64)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():  # learned inits start at zero; make them matter
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) * 0.5)
    return net


def inputs(
    net: CompiledNetwork,
    batch: int,
    steps: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for node in net.network.inputs:
        if node.input_kind == "tokens":
            out[node.name] = torch.randint(0, node.size, (batch, steps), generator=gen).to(device)
        elif node.input_kind == "static":
            out[node.name] = torch.randn(batch, node.size, generator=gen).to(device, dtype)
        else:
            out[node.name] = torch.randn(batch, steps, node.size, generator=gen).to(device, dtype)
    return out


def same(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10, what: str = "") -> None:
    torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m: f"{what}: {m}")


def seq_slice(
    net: CompiledNetwork, call: dict[str, torch.Tensor], b: int, start: int, stop: int
) -> dict[str, torch.Tensor]:
    """Sequence b of a call, steps [start, stop) (static inputs whole)."""
    out = {}
    for node in net.network.inputs:
        v = call[node.name][b : b + 1]
        out[node.name] = v if node.input_kind == "static" else v[:, start:stop]
    return out


# ---- padding invariance --------------------------------------------------------------------------


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "loop"])
@pytest.mark.parametrize(
    "spec",
    [ELMAN, LSTM, SKIP2, JORDAN, TOKENS, BIDIR],
    ids=["elman", "lstm", "skip2", "jordan", "tokens", "bidirectional"],
)
def test_padding_invariance(spec: str, fuse: bool, device: torch.device) -> None:
    """A sequence gives the same outputs, last values and state alone as padded among others."""
    net = compile64(spec, device, fuse)
    call = inputs(net, B, T, device)
    lengths = torch.tensor([T, 2, 5, 1], device=device)
    for b, length in enumerate(lengths.tolist()):  # padding full of large values: none may leak in
        for node in net.network.inputs:
            if node.input_kind == "seq":
                call[node.name][b, length:] = 1e3
    batch = net(**call, lengths=lengths)
    for b, length in enumerate(lengths.tolist()):
        alone = net(**seq_slice(net, call, b, 0, length))
        for o in net.network.outputs:
            got = batch[o.name][b]
            if o.last:
                same(got, alone[o.name][0], what=f"{o.name} last, sequence {b}")
            else:
                same(got[:length], alone[o.name][0], what=f"{o.name}, sequence {b}")
                assert not got[length:].any(), f"{o.name}: sequence {b} is not zero past its end"
        if batch.state is not None:
            assert alone.state is not None
            for k, v in batch.state.items():
                same(v[b], alone.state[k][0], what=f"state {k}, sequence {b}")


# ---- state: chunks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "loop"])
@pytest.mark.parametrize("spec", [LSTM, SKIP2, JORDAN, TOKENS], ids=["lstm", "skip2", "jordan", "tokens"])
def test_chunks_with_state_equal_one_call(spec: str, fuse: bool, device: torch.device) -> None:
    net = compile64(spec, device, fuse)
    steps = 7
    call = inputs(net, 3, steps, device)
    whole = net(**call)
    pieces: list[Outputs] = []
    state: Any = None
    for start, stop in [(0, 3), (3, 4), (4, 7)]:
        chunk = {k: v if net.network[k].input_kind == "static" else v[:, start:stop] for k, v in call.items()}
        pieces.append(net(**chunk, state=state))
        state = pieces[-1].state
    for o in net.network.outputs:
        if o.last:
            same(pieces[-1][o.name], whole[o.name], what=o.name)
        else:
            same(torch.cat([p[o.name] for p in pieces], 1), whole[o.name], what=o.name)
    assert whole.state is not None and state is not None
    for k in whole.state:
        same(state[k], whole.state[k], what=f"state {k}")


@pytest.mark.parametrize("spec", [LSTM, SKIP2, JORDAN, TOKENS], ids=["lstm", "skip2", "jordan", "tokens"])
def test_chunks_with_lengths_on_the_last_chunk(spec: str, device: torch.device) -> None:
    net = compile64(spec, device)
    first, rest = 4, 3
    call = inputs(net, 3, first + rest, device)
    tail = torch.tensor([3, 1, 2], device=device)
    whole = net(**call, lengths=tail + first)
    head = net(**{k: v if net.network[k].input_kind == "static" else v[:, :first] for k, v in call.items()})
    last = net(
        **{k: v if net.network[k].input_kind == "static" else v[:, first:] for k, v in call.items()},
        state=head.state,
        lengths=tail,
    )
    for o in net.network.outputs:
        if o.last:
            same(last[o.name], whole[o.name], what=o.name)
        else:
            same(torch.cat([head[o.name], last[o.name]], 1), whole[o.name], what=o.name)
    assert whole.state is not None and last.state is not None
    for k in whole.state:
        same(last.state[k], whole.state[k], what=f"state {k}")


def test_state_detach_keeps_the_signature() -> None:
    net = compile64(LSTM)
    out = net(**inputs(net, 2, 3))
    assert out.state is not None
    cut = out.state.detach()
    assert isinstance(cut, State) and cut.signature == out.state.signature == net.signature
    assert all(not v.requires_grad for v in cut.values()) and all(v.requires_grad for v in out.state.values())
    net(**inputs(net, 2, 3), state=cut).h.sum().backward()  # truncated BPTT: the graph stops at the cut


def test_a_carried_state_tells_the_batch_size_when_running_free() -> None:
    """`net(steps=N, state=warm.state)` asked for batch= although the state carries it."""
    net = rnndsl.compile(
        "network Free { input x: 1 = y[t-1]\n layer h: 8 tanh <- x, h[t-1]\n layer y: 1 <- h\n output y }"
    )
    warm = net(x=torch.randn(3, 5, 1))
    free = net(steps=6, state=warm.state)
    assert free.y.shape == (3, 6, 1)
    assert torch.equal(free.y, net(steps=6, batch=3, state=warm.state).y)
    with pytest.raises(ValueError, match="state"):
        net(steps=6, batch=2, state=warm.state)
    with pytest.raises(ValueError, match="give batch=N"):
        net(steps=6)


def test_state_for_a_network_reading_the_future_is_refused() -> None:
    net = compile64(BIDIR)
    out = net(**inputs(net, 2, 3))
    assert out.state is None
    with pytest.raises(
        ValueError,
        match=r"network `Bi` reads the future \(\[t\+k\]\), so it cannot continue from a "
        "state: give it whole sequences",
    ):
        net(**inputs(net, 2, 3), state={"f": torch.zeros(2, 1, 3, dtype=torch.float64)})


# ---- one module, any length --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [ELMAN, SKIP2], ids=["elman", "skip2"])
def test_short_and_long_sequences_with_one_module(spec: str, device: torch.device) -> None:
    net = compile64(spec, device)
    long = inputs(net, 2, 2000, device)
    out_long = net(**long)
    out_short = net(**{k: v[:, :5] for k, v in long.items()})
    assert out_long.y.shape == (2, 2000, net.network["y"].size)
    assert out_short.y.shape == (2, 5, net.network["y"].size)
    same(out_long.y[:, :5], out_short.y, what="the first steps do not depend on the length")
    assert torch.isfinite(out_long.y).all()


# ---- dtypes and devices --------------------------------------------------------------------------------


def test_to_device_matches_cpu(device: torch.device) -> None:
    cpu = compile64(LSTM)
    moved = copy.deepcopy(cpu).to(device)
    assert moved.like.device.type == device.type
    assert all(p.device.type == device.type for p in moved.parameters())
    call = inputs(cpu, 2, 5)
    expected = cpu(**call)
    got = moved(**{k: v.to(device) for k, v in call.items()})
    assert got.h.device.type == device.type
    same(got.h.cpu(), expected.h, tol=1e-8, what="h")
    if device.type != "cpu":
        with pytest.raises(ValueError, match=r"input `x` is on cpu but the network is on cuda"):
            moved(**call)


@pytest.mark.parametrize(
    ("convert", "dtype", "tol"),
    [("double", torch.float64, 1e-5), ("half", torch.float16, 3e-2), ("bfloat16", torch.bfloat16, 1e-1)],
)
@pytest.mark.parametrize("spec", [LSTM, JORDAN, TOKENS], ids=["lstm", "jordan", "tokens"])
def test_dtypes(spec: str, convert: str, dtype: torch.dtype, tol: float, device: torch.device) -> None:
    net = rnndsl.compile(spec).to(device)
    torch.manual_seed(0)
    call = inputs(net, 2, 5, device, torch.float32)
    expected = net(**call)
    other = getattr(copy.deepcopy(net), convert)()
    assert other.like.dtype == dtype
    got = other(**{k: v.to(dtype) if v.is_floating_point() else v for k, v in call.items()})
    for k in expected:
        assert got[k].dtype == dtype
        torch.testing.assert_close(got[k].float(), expected[k], atol=tol, rtol=tol)
    assert got.state is not None and all(v.dtype == dtype for v in got.state.values() if v.is_floating_point())


# ---- serialization -----------------------------------------------------------------------------------------


def _roundtrips() -> dict[str, Any]:
    def via_torch_save(net: CompiledNetwork) -> CompiledNetwork:
        buf = io.BytesIO()
        torch.save(net, buf)
        buf.seek(0)
        return torch.load(buf, weights_only=False)  # type: ignore[no-any-return]

    def via_state_dict(net: CompiledNetwork) -> CompiledNetwork:
        fresh = rnndsl.compile(net.network.source.text).double()
        fresh.load_state_dict(net.state_dict())
        return fresh

    return {
        "deepcopy": copy.deepcopy,
        "pickle": lambda n: pickle.loads(pickle.dumps(n)),
        "torch.save": via_torch_save,
        "state_dict": via_state_dict,
    }


ROUNDTRIPS = _roundtrips()


@pytest.mark.parametrize("how", list(ROUNDTRIPS))
@pytest.mark.parametrize("spec", [LSTM, JORDAN, TOKENS], ids=["lstm", "jordan", "tokens"])
def test_roundtrip_gives_identical_outputs(spec: str, how: str) -> None:
    net = compile64(spec)
    call = inputs(net, 2, 5)
    expected = net(**call)  # the generated code is built: it must not travel, and must be rebuilt
    clone = ROUNDTRIPS[how](net)
    assert clone is not net
    got = clone(**call)
    for k in expected:
        assert torch.equal(got[k], expected[k]), k
    assert expected.state is not None and got.state is not None
    for k in expected.state:
        assert torch.equal(got.state[k], expected.state[k]), k
    assert got.state.signature == expected.state.signature
    net(**call, state=got.state)  # a clone's state continues the original


def test_state_dict_keys_are_stable() -> None:
    lstm = rnndsl.compile(EXAMPLES / "lstm.rnn")
    assert list(lstm.state_dict()) == [
        "layers.i.bias",
        "layers.i.weight.0",
        "layers.i.weight.1",
        "layers.f.bias",
        "layers.f.weight.0",
        "layers.f.weight.1",
        "layers.g.bias",
        "layers.g.weight.0",
        "layers.g.weight.1",
        "layers.o.bias",
        "layers.o.weight.0",
        "layers.o.weight.1",
    ]
    jordan = rnndsl.compile(EXAMPLES / "jordan.rnn")
    assert list(jordan.state_dict()) == [
        "layers.h.bias",
        "layers.h.weight.0",
        "layers.h.weight.1",
        "layers.y.bias",
        "layers.y.weight.0",
        "learned_init.y",
    ]
    generator = rnndsl.compile(EXAMPLES / "generator.rnn")
    assert list(generator.state_dict()) == [
        "layers.h.bias",
        "layers.h.weight.0",
        "layers.h.weight.1",
        "layers.h.weight.2",
        "layers.y.bias",
        "layers.y.weight.0",
        "init_projection.h.weight",
        "init_projection.h.bias",
    ]
    stacked = rnndsl.compile(EXAMPLES / "stacked.rnn", network="Stacked")
    assert list(stacked.state_dict()) == [
        "layers.l1__h.bias",
        "layers.l1__h.weight.0",
        "layers.l1__h.weight.1",
        "layers.l2__h.bias",
        "layers.l2__h.weight.0",
        "layers.l2__h.weight.1",
        "layers.y.bias",
        "layers.y.weight.0",
    ]


# ---- introspection -------------------------------------------------------------------------------------------


def test_weight_bias_initial() -> None:
    net = rnndsl.compile(EXAMPLES / "jordan.rnn")
    assert net.weight("h", "x").shape == (64, 16)
    assert net.weight("h", "y[t-1]").shape == (64, 10)
    assert net.weight("h", " y[ t - 1 ] ") is net.weight("h", 1)
    assert net.weight("h", 0) is net.weight("h", "x")
    assert isinstance(net.weight("y", 0), torch.nn.Parameter)
    bias = net.bias("h")
    assert bias is not None and bias.shape == (64,)
    assert net.initial("y").shape == (10,)
    with pytest.raises(KeyError, match=r"layer `h` has no source `h\[t-1\]`; its sources are: x, y\[t-1\]"):
        net.weight("h", "h[t-1]")
    with pytest.raises(KeyError, match="no layer `z`; layers are: h, y"):
        net.weight("z", 0)
    with pytest.raises(KeyError, match="no layer `x`; layers are: h, y"):
        net.bias("x")
    with pytest.raises(KeyError, match="`h` has no learned initial value; these do: y"):
        net.initial("h")
    with pytest.raises((IndexError, KeyError)):
        net.weight("h", 2)


def test_weight_of_an_expression_node_and_bias_false() -> None:
    net = rnndsl.compile(LSTM.replace("layer  o: 4 sigmoid <- x", "layer  o: 4 sigmoid bias=false <- x"))
    assert net.bias("o") is None
    with pytest.raises(KeyError, match="no layer `c`; layers are: i, f, g, o"):
        net.weight("c", 0)
    with pytest.raises(KeyError, match="`c` has no learned initial value; these do: none"):
        net.initial("c")


def test_weights_written_through_weight_change_the_output() -> None:
    net = compile64(ELMAN)
    call = inputs(net, 2, 3)
    before = net(**call).y
    with torch.no_grad():
        net.weight("y", "h").zero_()
        net.bias("y").fill_(0.25)  # type: ignore[union-attr]
    assert torch.equal(net(**call).y, torch.full_like(before, 0.25))


def test_graph_and_unroll() -> None:
    net = rnndsl.compile(EXAMPLES / "elman.rnn")
    g = net.graph
    assert sorted((u, v, d) for u, v, d in g.edges(data="delay")) == [("h", "h", 1), ("h", "y", 0), ("x", "h", 0)]
    dag = rnndsl.unroll(net, steps=5)
    assert dag.number_of_nodes() == 3 * 5 + 1  # x, h, y at each step, and h's initial value
    assert dag.nodes["h", -1]["kind"] == "initial"
    assert dag.has_edge(("h", -1), ("h", 0)) and dag.has_edge(("h", 3), ("h", 4))
    assert dag.number_of_edges() == 3 * 5


def test_code_is_readable_python() -> None:
    net = rnndsl.compile(EXAMPLES / "jordan.rnn")
    code = net.code()
    print(code)
    assert code.startswith("def forward(")
    assert "for t in range(T)" in code
    assert "lengths" in net.code(lengths=True)
    compile(code, "<generated>", "exec")
    bidir = rnndsl.compile(BIDIR).code()
    assert "for t in range(T - 1, -1, -1)" in bidir


def test_outputs_mapping() -> None:
    net = compile64(ELMAN)
    out = net(**inputs(net, 2, 3))
    assert list(out) == ["y", "h"] and len(out) == 2
    assert out["y"] is out.y
    assert repr(out) == "Outputs(y=(2, 3, 2), h=(2, 4))"
    with pytest.raises(AttributeError, match="no output `z`; outputs are: y, h"):
        out.z  # noqa: B018
    with pytest.raises(KeyError):
        out["z"]


# ---- dropout -------------------------------------------------------------------------------------------------


def test_dropout_varies_in_train_mode_only() -> None:
    spec = """network D {
        input x: 3
        layer h: 8 tanh dropout=0.5 <- x, h[t-1]
        layer y: 8 dropout=0.5 <- h
        output y
    }"""
    net = rnndsl.compile(spec)
    x = torch.randn(4, 6, 3)
    net.train()
    assert not torch.equal(net(x).y, net(x).y)
    with pytest.raises(ValueError, match=r"does not model dropout: call net.eval\(\) first"):
        reference(net, x)
    net.eval()
    assert torch.equal(net(x).y, net(x).y)
    torch.testing.assert_close(net(x).y, reference(net, x).y, atol=1e-5, rtol=1e-5)


def test_dropout_mask_is_one_per_sequence_and_scaled() -> None:
    """Variational dropout: the same units are dropped at every step of a sequence, kept ones scaled by 1/(1-p)."""
    net = rnndsl.compile("""network D {
        input x: 3
        layer y: 32 dropout=0.5 bias=false <- x
        layer h: 32 tanh dropout=0.5 <- x, h[t-1]
        output y
        output h
    }""")
    x = torch.ones(4, 6, 3)
    expected = net.eval()(x)
    torch.manual_seed(0)
    got = net.train()(x)
    ratio = got.y / expected.y
    assert set(ratio.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(ratio, ratio[:, :1].expand_as(ratio)), "the mask changes from step to step"
    dropped = got.h == 0
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))
    assert not torch.equal(dropped[0], dropped[1]), "two sequences drew the same mask"


# ---- cost --------------------------------------------------------------------------------------------------------


def _backward_seconds(net: CompiledNetwork, steps: int) -> float:
    x = torch.randn(2, steps, 3, requires_grad=True)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        net(x).y.sum().backward()
        best = min(best, time.perf_counter() - start)
    return best


def test_backward_is_linear_in_the_length() -> None:
    """A loose check against quadratic indexing: doubling T should about double forward + backward."""
    net = rnndsl.compile(SKIP2)  # a generated loop, not a fused kernel
    _backward_seconds(net, 50)  # warm up (code generation, allocator)
    short, long = _backward_seconds(net, 500), _backward_seconds(net, 1000)
    assert long / short < 3.5, f"T=500: {short:.3f}s, T=1000: {long:.3f}s"


def test_a_call_reads_parameters_replaced_after_the_first_call() -> None:
    """A parameter, a weight list or a whole layer replaced between calls is what the next call reads (a call
    may cache what depends on the network only, never the parameters)."""
    net = rnndsl.compile(ELMAN)
    x = torch.randn(2, 5, 3)
    net(x)
    net.layers["h"].weight[0] = torch.nn.Parameter(torch.zeros(4, 3))
    assert net.parameter_table()["_W0_h"] is net.weight("h", 0)
    net.layers["h"].weight = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.ones(4, 3)), torch.nn.Parameter(torch.ones(4, 4))]
    )
    assert net.parameter_table()["_W1_h"] is net.weight("h", 1)
    net.layers["y"] = copy.deepcopy(net.layers["y"])
    assert net.parameter_table()["_b_y"] is net.bias("y")
    net.load_state_dict({k: torch.zeros_like(v) for k, v in net.state_dict().items()}, assign=True)
    assert torch.equal(net(x).y, torch.zeros(2, 5, 2))


def test_zero_start_values_are_kept_until_something_writes_into_them() -> None:
    """A call's zero starts and their histories are the last call's tensors (no new ones a call); one written
    into, resized, or of another dtype is made again; each delayed node has its own."""
    net = rnndsl.compile(LSTM)  # h and c: two delayed nodes of one size
    first = net.boundary_values({}, 2)
    again = net.boundary_values({}, 2)
    assert again["h"] is first["h"] and again["c"] is first["c"] and first["h"] is not first["c"]
    assert net.histories(again, None, 2)["h"] is net.histories(again, None, 2)["h"]
    net.histories(again, None, 2)["c"].select(1, 0).add_(1)  # written through a view
    fresh = net.boundary_values({}, 2)
    assert fresh["c"] is not first["c"] and not fresh["c"].any() and fresh["h"] is first["h"]
    assert net.boundary_values({}, 3)["h"].shape == (3, 4)
    assert net.double().boundary_values({}, 3)["h"].dtype == torch.float64


def test_a_calls_zero_starts_are_kept_whole_with_their_histories() -> None:
    """Where every delayed node starts from zeros, a call of the last call's batch size gets that call's start
    values and histories as they were (no per-node work); one written into, or another batch size, makes them
    again. A learned start is never kept (autograd must record its `expand` at every call)."""
    net = rnndsl.compile(LSTM)
    starts = net.boundary_values({}, 2)
    assert net.boundary_values({}, 2) is starts
    history = net.histories(starts, None, 2)
    assert net.histories(starts, None, 2) is history
    assert net.histories(dict(starts), None, 2) is not history  # another caller's start values
    history["h"].select(1, 0).add_(1)
    fresh = net.boundary_values({}, 2)
    assert fresh is not starts and not fresh["h"].any() and not net.histories(fresh, None, 2)["h"].any()
    assert net.boundary_values({}, 3) is not fresh and net.boundary_values({}, 3)["h"].shape == (3, 4)
    learned = rnndsl.compile(LSTM.replace("output h", "init h = learned\n output h"))
    assert not learned.layout.zero_starts
    assert learned.boundary_values({}, 2) is not learned.boundary_values({}, 2)


def test_kept_starts_are_plain_tensors_and_survive_an_inference_mode_move() -> None:
    """A call under a dispatch mode (fake tensors) keeps none of its start values for a real call; a module moved
    or converted under `inference_mode` (its `like` an inference tensor, with no version counter) runs calls
    outside it as before."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    net = rnndsl.compile(ELMAN)
    x = torch.randn(2, 1, 3)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.no_grad():
        net(mode.from_tensor(x))
    assert type(net(x).y) is torch.Tensor
    with torch.inference_mode():
        net.double()
    with torch.no_grad():
        first, again = net(x.double()), net(x.double())
    torch.testing.assert_close(first.y, again.y, rtol=0, atol=0)


def test_results_written_into_leave_the_next_call_alone() -> None:
    """Outputs and state written into in place (a user's `add_`) change nothing a later call computes."""
    specs = (LSTM, ELMAN, (EXAMPLES / "peephole_lstm.rnn").read_text())
    for spec, steps in itertools.product(specs, (5, 1)):  # one step: the state's h is the output's h
        net = rnndsl.compile(spec)
        x = torch.randn(2, steps, net.network.inputs[0].size)
        with torch.no_grad():
            expected = {k: v.clone() for k, v in net(x).items()}
            for _ in range(2):
                out = net(x)
                for v in [*out.values(), *(out.state or {}).values()]:
                    v.add_(1)
            again = net(x)
        for k, v in expected.items():
            torch.testing.assert_close(again[k], v, rtol=0, atol=0)


@pytest.mark.parametrize("example", ["lstm", "bilstm", "skip2"])
def test_inference_mode_calls_keep_nothing(example: str) -> None:
    """Tensors made under `torch.inference_mode` (no version counter; not writable nor savable outside it) are
    not kept: calls after it, training or not, run as before it."""
    net = rnndsl.compile((EXAMPLES / f"{example}.rnn").read_text())
    x = torch.randn(2, 5, net.network.inputs[0].size)
    with torch.inference_mode():  # first, as a trainer's sanity check of the validation step runs
        before = {k: v.clone() for k, v in net(x).items()}
        net(x)
    with torch.no_grad():
        for k, v in net(x).items():
            torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    sum(v.sum() for v in net(x).values()).backward()


def test_kept_zero_vectors_are_made_again_once_written_into() -> None:
    from rnndsl.backend import kernels

    like = torch.zeros((), dtype=torch.float64)
    z = kernels.zeros(7, like)
    assert kernels.zeros(7, like) is z and z.dtype == torch.float64 and kernels.zeros(7, torch.zeros(())) is not z
    z.add_(1)
    assert not kernels.zeros(7, like).any()


@pytest.mark.parametrize("example", ["lstm", "gru", "bilstm"])
def test_inference_between_training_steps_reads_the_weights_as_they_are(example: str) -> None:
    """Evaluation after each optimizer step (the weights written in place, also through `.data`) gives what a
    fresh module with those weights gives: nothing made of older weights is read."""
    spec = (EXAMPLES / f"{example}.rnn").read_text()
    net = rnndsl.compile(spec)
    x = torch.randn(2, 5, net.network.inputs[0].size)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for step in range(4):
        if step == 3:  # written through `.data`, which no version counter sees (an EMA's, a hand-made step's)
            for p in net.parameters():
                p.data.mul_(0.5)
        with torch.no_grad():
            seen = net(x)
        fresh = rnndsl.compile(spec)
        fresh.load_state_dict(net.state_dict())
        with torch.no_grad():
            expected = fresh(x)
        for k in expected:
            torch.testing.assert_close(seen[k], expected[k], rtol=0, atol=0)
        opt.zero_grad()
        sum(v.square().sum() for v in net(x).values()).backward()
        opt.step()


def test_a_node_named_like_a_module_attribute_gets_its_own_key() -> None:
    """`training` is an attribute of every nn.Module instance (not of the class): it crashed as a key."""
    net = rnndsl.compile(
        "network N { input x: 2\n layer training: 3 tanh <- x, training[t-1]\n"
        " init training = learned\n output training }"
    )
    assert "layers.training__.bias" in net.state_dict() and "learned_init.training__" in net.state_dict()
    assert net(torch.zeros(1, 4, 2)).training.shape == (1, 4, 3)
