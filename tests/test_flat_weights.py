"""A fused cell's parameters as views of one buffer laid out as torch's kernel takes them (`kernels.Flat`), and a
custom loop's joined weights so (`plan.group_joins`): a call passes the buffer without joining the gates' weights,
and every way of moving, converting, loading, copying or replacing the parameters leaves calls computing with the
parameters as they are."""

from __future__ import annotations

import copy
import io
import pickle
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from torch.func import functional_call

import rnndsl
from rnndsl.backend import kernels
from rnndsl.runtime.network import CompiledNetwork

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LSTM = (EXAMPLES / "lstm.rnn").read_text()
GRU = (EXAMPLES / "gru.rnn").read_text()
BIDIRECTIONAL = """network Bi {
    input  x: 3
    layer  fi: 4 sigmoid <- x, fh[t-1]
    layer  ff: 4 sigmoid <- x, fh[t-1]
    layer  fg: 4 tanh    <- x, fh[t-1]
    layer  fo: 4 sigmoid <- x, fh[t-1]
    fc = ff * fc[t-1] + fi * fg
    fh = fo * tanh(fc)
    layer  br: 4 sigmoid <- x, bh[t+1]
    layer  bz: 4 sigmoid <- x, bh[t+1]
    layer  bnx: 4 <- x
    layer  bnh: 4 <- bh[t+1]
    bn = tanh(bnx + br * bnh)
    bh = (1 - bz) * bn + bz * bh[t+1]
    h = concat(fh, bh)
    output h
}"""
TWO_SOURCES = LSTM.replace("input  x: 32", "input  x: 32\n    input  y: 2").replace("<- x,", "<- x, y,")
# a custom loop: i, f read h[t-1] and c[t-1] (one group, its weights joined), o the new c; g has no bias (zero rows)
PEEPHOLE = """network Peephole {
    input x: 3
    layer i: 4 sigmoid <- x, h[t-1], c[t-1]
    layer f: 4 sigmoid bias=false <- x, h[t-1], c[t-1]
    layer g: 4 tanh <- x, h[t-1]
    c = f * c[t-1] + i * g
    layer o: 4 sigmoid <- x, h[t-1], c
    h = o * tanh(c)
    output h
}"""


def _net(spec: str) -> CompiledNetwork:
    torch.manual_seed(0)
    return rnndsl.compile(spec).double()


def _x(net: CompiledNetwork) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {n.name: torch.randn(2, 5, n.size, generator=gen, dtype=torch.float64) for n in net.network.inputs}


def _joined(net: CompiledNetwork, **inputs: torch.Tensor) -> torch.Tensor:
    """The same call on the generated loop (no fused cell, nothing laid out: the code joins every weight) with the
    module's parameters as they are now."""
    plain = CompiledNetwork(net.network, fuse_cells=False).to(net.like.dtype)
    plain.load_state_dict(net.state_dict())
    plain._flats.clear()
    with torch.no_grad():
        return plain(**inputs)["h"]


def _joined_parameters(cat: mock.MagicMock) -> int:
    """How many calls of a spied `torch.cat` joined parameters (the weights of a cell not laid out)."""
    return sum(any(isinstance(t, torch.nn.Parameter) for t in call.args[0]) for call in cat.call_args_list)


def _flat_now(net: CompiledNetwork) -> bool:
    """Whether the next call finds every laid-out parameter (a fused cell's, a group's) in its buffer."""
    table = net.parameter_table()
    return bool(net._flats) and all(
        all(table[name].data_ptr() == ptr for name, ptr in zip(cell.params, net._flats[cell.key].ptrs, strict=True))
        for cell in net._flat_cells[net.like.device.type]
    )


@pytest.mark.parametrize("spec", [LSTM, GRU], ids=["lstm", "gru"])
def test_a_fused_cells_parameters_are_views_of_one_buffer_as_the_kernel_takes_them(spec: str) -> None:
    """w_ih, w_hh, b_ih, b_hh one after another from the buffer's start (what cuDNN takes without repacking),
    each the gates' parameters in torch's order, a GRU's hidden-side bias zero but for its candidate's."""
    net = _net(spec)
    (flat,) = net._flats.values()
    w_ih, w_hh, b_ih, b_hh = flat.views
    assert w_ih.storage_offset() == 0
    for a, b in zip(flat.views, flat.views[1:], strict=False):
        assert b.data_ptr() == a.data_ptr() + a.numel() * a.element_size()
    gates = ("i", "f", "g", "o") if spec is LSTM else ("r", "z", "nx")
    assert torch.equal(w_ih, torch.cat([net.weight(g, "x") for g in gates]))
    assert torch.equal(b_ih, torch.cat([net.bias(g) for g in gates]))
    if spec is LSTM:
        assert torch.equal(w_hh, torch.cat([net.weight(g, "h[t-1]") for g in gates]))
        assert not b_hh.any()
    else:
        assert torch.equal(w_hh, torch.cat([net.weight("r", "h[t-1]"), net.weight("z", "h[t-1]"), net.weight("nh", 0)]))
        assert torch.equal(b_hh, torch.cat([torch.zeros(256, dtype=torch.float64), net.bias("nh")]))
    for p in net.parameters():
        assert p.untyped_storage().data_ptr() == w_ih.untyped_storage().data_ptr()


def test_a_cell_reading_several_outside_sources_keeps_separate_parameters() -> None:
    """Its w_ih joins each gate's weights side by side: no parameter could be a block of whole rows."""
    net = _net(TWO_SOURCES)
    assert net._flats == {} and "K.flat" not in net.code()
    assert torch.allclose(net(**_x(net)).h, _joined(net, **_x(net)), atol=1e-12)


@pytest.mark.parametrize("spec", [LSTM, GRU, BIDIRECTIONAL], ids=["lstm", "gru", "bidirectional"])
def test_a_call_without_autograd_passes_the_buffer_and_computes_what_joined_weights_do(spec: str) -> None:
    net = _net(spec)
    assert len(net._flats) == (2 if spec is BIDIRECTIONAL else 1)
    with torch.no_grad(), mock.patch.object(torch, "cat", wraps=torch.cat) as cat:
        out = net(**_x(net)).h
    assert _joined_parameters(cat) == 0
    assert torch.allclose(out, _joined(net, **_x(net)), atol=1e-12)
    with torch.inference_mode():
        assert torch.allclose(net(**_x(net)).h, out, atol=1e-12)


def test_writes_into_the_parameters_are_what_the_next_call_reads() -> None:
    """An optimizer's step, a write through `.data`: the buffer is the parameters' storage."""
    net = _net(LSTM)
    before = net(**_x(net)).h
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    before.sum().backward()
    opt.step()
    with torch.no_grad():
        net.weight("g", "x").data.mul_(2)
        after = net(**_x(net)).h
    assert not torch.allclose(after, before)
    assert torch.allclose(after, _joined(net, **_x(net)), atol=1e-12)


def test_parameters_swapped_in_by_functional_call_are_what_the_call_reads() -> None:
    net = _net(LSTM)
    other = {k: v.detach() + 0.5 for k, v in net.named_parameters()}
    with torch.no_grad():
        got = functional_call(net, other, (), _x(net)).h
        want = functional_call(CompiledNetwork(net.network, fuse_cells=False).double(), other, (), _x(net)).h
    assert torch.allclose(got, want, atol=1e-12)
    assert not torch.allclose(got, net(**_x(net)).h)


def test_a_replaced_parameter_is_what_the_next_call_reads() -> None:
    net = _net(LSTM)
    net(**_x(net))
    net.layers["g"].weight[0] = torch.nn.Parameter(torch.ones(128, 32, dtype=torch.float64))
    assert not _flat_now(net)
    with torch.no_grad():
        out = net(**_x(net)).h
    assert torch.allclose(out, _joined(net, **_x(net)), atol=1e-12)


@pytest.mark.parametrize("spec", [LSTM, PEEPHOLE], ids=["lstm", "peephole"])
@pytest.mark.parametrize("how", ["data", "functional_call"])
def test_a_parameter_at_the_views_address_but_strided_otherwise_is_what_the_call_reads(spec: str, how: str) -> None:
    """A square weight given its own storage transposed (`w.data = w.data.t()`) starts where the buffer's view
    did: the address alone says "still laid out", the strides do not."""
    net = _net(spec)
    x = _x(net)
    name, w = next((k, p) for k, p in net.named_parameters() if p.dim() == 2 and p.shape[0] == p.shape[1])
    with torch.no_grad():
        net(**x)  # the call that finds the buffer laid out
        other = {k: v.detach() for k, v in net.named_parameters()}
        other[name] = w.detach().t()
        assert other[name].data_ptr() == w.data_ptr() and not other[name].is_contiguous()
        if how == "data":
            w.data = w.data.t()
            got = net(**x).h
        else:
            got = functional_call(net, other, (), x).h
        want = functional_call(CompiledNetwork(net.network, fuse_cells=False).double(), other, (), x).h
    assert torch.allclose(got, want, atol=1e-12)


class _Twice(torch.nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return 2 * w


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "loop"])
@pytest.mark.parametrize("spec", [LSTM, PEEPHOLE], ids=["lstm", "peephole"])
def test_a_parametrized_weight_is_what_the_call_reads(spec: str, fuse: bool) -> None:
    """`torch.nn.utils.parametrize` (what weight_norm and orthogonal use) takes the weight out of its module's
    parameters and computes it at each read: the call reads it so, and its gradient reaches the original."""
    torch.manual_seed(0)
    net = rnndsl.compile(spec, fuse_cells=fuse).double()
    twin = rnndsl.compile(spec, fuse_cells=fuse).double()
    twin.load_state_dict(net.state_dict())
    torch.nn.utils.parametrize.register_parametrization(net.layers["g"].weight, "1", _Twice())
    with torch.no_grad():
        twin.layers["g"].weight[1].mul_(2)
        assert torch.equal(net(**_x(net)).h, twin(**_x(twin)).h)
    net(**_x(net)).h.sum().backward()
    twin(**_x(twin)).h.sum().backward()
    original = net.layers["g"].weight.parametrizations["1"].original
    assert original.grad is not None and torch.allclose(original.grad, 2 * twin.layers["g"].weight[1].grad)


Convert = Any


@pytest.mark.parametrize(
    "convert",
    [
        lambda n: n.float(),
        lambda n: n.to(torch.float64),
        lambda n: copy.deepcopy(n),
        lambda n: pickle.loads(pickle.dumps(n)),
        lambda n: n.share_memory(),
    ],
    ids=["float", "to-same", "deepcopy", "pickle", "share_memory"],
)
@pytest.mark.parametrize("spec", [LSTM, PEEPHOLE], ids=["lstm", "peephole"])
def test_a_moved_converted_or_copied_module_is_laid_out_again(convert: Convert, spec: str) -> None:
    net = _net(spec)
    want = net(**_x(net)).h.detach()
    other = convert(net)
    assert _flat_now(other)
    x = {k: v.to(other.like.dtype) for k, v in _x(net).items()}
    with torch.no_grad(), mock.patch.object(torch, "cat", wraps=torch.cat) as cat:
        got = other(**x).h
    assert _joined_parameters(cat) == 0
    assert torch.allclose(got.double(), want, atol=1e-6)
    if other is not net:  # the original is untouched
        assert _flat_now(net) and torch.equal(net(**_x(net)).h, want)


def test_a_custom_loops_joined_weights_are_views_of_one_buffer() -> None:
    """The group i, f: per loop-reading source (h[t-1], c[t-1]) the members' weights, then their shared outside
    source's weights and their biases, a layer without one zero rows; one after another in one storage."""
    net = _net(PEEPHOLE)
    (flat,) = net._flats.values()
    hh, cc, xx, b = flat.views
    assert torch.equal(hh, torch.cat([net.weight("i", "h[t-1]"), net.weight("f", "h[t-1]")]))
    assert torch.equal(cc, torch.cat([net.weight("i", "c[t-1]"), net.weight("f", "c[t-1]")]))
    assert torch.equal(xx, torch.cat([net.weight("i", "x"), net.weight("f", "x")]))
    assert torch.equal(b, torch.cat([net.bias("i"), torch.zeros(4, dtype=torch.float64)]))
    for a, later in zip(flat.views, flat.views[1:], strict=False):
        assert later.data_ptr() == a.data_ptr() + a.numel() * a.element_size()
    table = net.parameter_table()
    assert {n for n, p in table.items() if p.untyped_storage().data_ptr() == hh.untyped_storage().data_ptr()} == {
        "_W0_i",
        "_W1_i",
        "_W2_i",
        "_b_i",
        "_W0_f",
        "_W1_f",
        "_W2_f",
    }


@pytest.mark.parametrize("spec", [PEEPHOLE, LSTM], ids=["peephole", "lstm-unfused"])
def test_a_custom_loop_without_autograd_passes_the_buffer_and_computes_what_joined_weights_do(spec: str) -> None:
    """Every variant a call takes: one step (the plain loop), several (the loop's C steps or its generated loop),
    check_finite (the guarded loop); while autograd records, the weights are joined (`kernels.flat`), and the
    gradients are those of a module that joins them."""
    torch.manual_seed(0)
    net = CompiledNetwork(rnndsl.compile(spec).network, fuse_cells=False).double()
    assert len(net._flats) == 1 and "K.flat(_J.get('_j" in net.code()
    x = _x(net)
    for steps in (1, 5):
        part = {k: v[:, :steps] for k, v in x.items()}
        with torch.no_grad(), mock.patch.object(torch, "cat", wraps=torch.cat) as cat:
            out = net(**part).h
            guarded = net(**part, check_finite=True).h
        assert _joined_parameters(cat) == 0
        assert torch.allclose(out, _joined(net, **part), atol=1e-12)
        assert torch.allclose(guarded, out, atol=1e-12)
    net(**x).h.sum().backward()
    plain = CompiledNetwork(net.network, fuse_cells=False).double()
    plain.load_state_dict(net.state_dict())
    plain._flats.clear()
    plain(**x).h.sum().backward()
    for (k, p), q in zip(net.named_parameters(), plain.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-12), k  # type: ignore[arg-type]


def test_a_custom_loops_parameter_replaced_or_swapped_in_is_what_the_call_reads() -> None:
    net = _net(PEEPHOLE)
    other = {k: v.detach() + 0.5 for k, v in net.named_parameters()}
    with torch.no_grad():
        got = functional_call(net, other, (), _x(net)).h
        fresh = _net(PEEPHOLE)
        fresh.load_state_dict(other)
        assert torch.allclose(got, fresh(**_x(net)).h, atol=1e-12)
    net.layers["f"].weight[1] = torch.nn.Parameter(torch.ones(4, 4, dtype=torch.float64))
    assert not _flat_now(net)
    with torch.no_grad():
        assert torch.allclose(net(**_x(net)).h, _joined(net, **_x(net)), atol=1e-12)


# groups of other shapes: a static outside source and a backward-running loop; a first member without a bias
# and two shared outside sources; token ids and two delays (their outside projections are not joined)
GROUPS = {
    "static-and-backward": """network B {
        input x: 3
        input s: 2 static
        layer a: 4 sigmoid <- x, s, f[t-1]
        layer b: 4 tanh bias=false <- x, s, f[t-1]
        f = a * b
        layer c: 4 sigmoid bias=false <- x, g[t+1]
        layer d: 4 tanh <- x, g[t+1]
        g = c * d + f
        h = concat(f, g)
        output h
    }""",
    "first-without-bias": """network A {
        input x: 3
        input y: 2
        layer f: 4 sigmoid bias=false <- x, h[t-1], y
        layer i: 4 tanh <- x, h[t-1], y
        layer g: 4 sigmoid bias=false <- x, h[t-1], y
        h = f * g + i
        output h
    }""",
    "tokens-two-delays": """network C {
        input w: tokens(7)
        layer a: 4 sigmoid <- w, h[t-1], h[t-2]
        layer b: 4 tanh <- w, h[t-1], h[t-2]
        h = a * b
        output h
    }""",
    "peephole": PEEPHOLE,
}


def _inputs(net: CompiledNetwork, steps: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    out = {}
    for n in net.network.inputs:
        if n.is_tokens:
            out[n.name] = torch.randint(0, n.size, (2, steps), generator=gen)
        else:
            shape = (2, n.size) if n.input_kind == "static" else (2, steps, n.size)
            out[n.name] = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return out


@pytest.mark.parametrize("spec", GROUPS.values(), ids=GROUPS.keys())
def test_a_custom_loops_buffer_computes_what_joined_weights_do_in_every_kind_of_call(spec: str) -> None:
    """One step and five, with lengths, continued from a state (where the network reads no future), without
    autograd (the buffer's views) against the same module joining its weights (`_flats` cleared)."""
    net = _net(spec)
    assert any(key.startswith("_j") for key in net._flats)
    joined = copy.deepcopy(net)
    joined._flats.clear()
    for steps in (1, 5):
        x = _inputs(net, steps)
        lengths = torch.tensor([steps, max(1, steps - 2)])
        with torch.no_grad(), mock.patch.object(torch, "cat", wraps=torch.cat) as cat:
            got, ragged, first = net(**x).h, net(**x, lengths=lengths).h, net(**x)
            again = net(**x, state=first.state).h if first.state is not None else None
        assert _joined_parameters(cat) == 0
        with torch.no_grad():
            assert torch.allclose(got, joined(**x).h, atol=1e-12)
            assert torch.allclose(ragged, joined(**x, lengths=lengths).h, atol=1e-12)
            if again is not None:
                assert torch.allclose(again, joined(**x, state=joined(**x).state).h, atol=1e-12)


@pytest.mark.parametrize(
    "spec", [LSTM, GRU, BIDIRECTIONAL, *GROUPS.values()], ids=["lstm", "gru", "bidirectional", *GROUPS.keys()]
)
def test_laying_the_parameters_out_keeps_their_values(spec: str) -> None:
    """The same seed with nothing laid out: the same state_dict, and the same outputs without autograd."""
    with mock.patch("rnndsl.runtime.network.flat_weights", return_value=[]):
        apart = _net(spec)
    net = _net(spec)
    assert not apart._flats and net._flats
    want = apart.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in net.state_dict().items()) and net.state_dict().keys() == want.keys()
    x = _inputs(net, 5)
    with torch.no_grad():
        assert torch.allclose(net(**x).h, apart(**x).h, atol=1e-12)


def test_a_groups_buffer_through_autograd_gives_what_joined_weights_give(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path a CUDA call takes while autograd records (`kernels._Flat`), run on a CPU, for a group: the
    gradients of joined weights, and a second derivative through it (a gradient penalty)."""
    net = _net(PEEPHOLE)
    x = _x(net)["x"].requires_grad_(True)
    net(x=x).h.sum().backward()
    want = {k: p.grad.clone() for k, p in net.named_parameters()}  # type: ignore[union-attr]
    net.zero_grad()
    monkeypatch.setattr(kernels, "_FLAT_AUTOGRAD", True)
    with mock.patch.object(kernels._Flat, "apply", wraps=kernels._Flat.apply) as through:
        net(x=x).h.sum().backward()
    assert through.call_count == 1
    for k, p in net.named_parameters():
        assert torch.allclose(p.grad, want[k], atol=1e-12), k  # type: ignore[arg-type]
    net.zero_grad()
    net.generated_backward = False  # loops on autograd: what double backward needs
    (grad,) = torch.autograd.grad(net(x=x).h.pow(2).sum(), x, create_graph=True)
    grad.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_a_network_running_free_takes_its_own_joins() -> None:
    """Running free, the loop reads the self-fed input `x[t-1]` too: the same parameters, in the same order, are
    joined into two tensors where the network given `x` joins three (its shared outside source's weights and a
    bias part of zero rows). Each takes its own record, or none: the cats."""
    spec = """network F {
        input  x: 4 = h[t-1]
        layer  a: 4 sigmoid bias=false <- h[t-1], x[t-1]
        layer  b: 4 tanh bias=false <- h[t-1], x[t-1]
        h = a * b
        output h
    }"""
    net = _net(spec)
    with torch.no_grad():
        free = net(steps=5, batch=2).h
        fed = net(x=free).h
    plain = CompiledNetwork(net.network, fuse_cells=False).double()
    plain.load_state_dict(net.state_dict())
    plain._flats.clear()
    with torch.no_grad():
        assert torch.allclose(free, plain(steps=5, batch=2).h, atol=1e-12)
        assert torch.allclose(fed, plain(x=free).h, atol=1e-12)


def test_an_old_pickle_is_laid_out_again() -> None:
    """A module pickled before groups were laid out holds its cells' records (`CellWeights`) in `_flat_cells`: what
    is laid out is worked out again from the network."""
    net = _net(LSTM)
    state = net.__dict__.copy()
    state["_flat_cells"] = {"cpu": [object()]}  # not a `Joins`
    state["_flats"] = {}
    old = CompiledNetwork.__new__(CompiledNetwork)
    old.__setstate__(state)
    assert _flat_now(old) and torch.equal(old(**_x(old)).h, net(**_x(net)).h)


def test_a_storage_adopted_keeps_the_zero_rows_zero() -> None:
    """The parameters of a state_dict loaded with `assign=True` lie in one storage as the buffer would hold them,
    but where a bias-less layer's zero rows go, the other spec's bias lies: that storage is not adopted."""
    with_bias = PEEPHOLE.replace("layer f: 4 sigmoid bias=false", "layer f: 4 sigmoid")
    other, net = _net(with_bias), _net(PEEPHOLE)
    saved = io.BytesIO()
    torch.save(other.state_dict(), saved)
    saved.seek(0)
    net.load_state_dict(torch.load(saved), strict=False, assign=True)
    (flat,) = net._flats.values()
    assert not flat.views[-1][4:].any()
    with torch.no_grad():
        assert torch.allclose(net(**_x(net)).h, _joined(net, **_x(net)), atol=1e-12)


def test_share_memory_keeps_the_parameters_in_shared_memory() -> None:
    net = _net(LSTM).share_memory()
    assert all(p.is_shared() for p in net.parameters())
    assert all(v.is_shared() for v in net._flats["h"].views)


def test_a_state_dict_loaded_with_assign_is_laid_out_again() -> None:
    net, other = _net(LSTM), _net(LSTM)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.25)
    weights = {k: v.clone() for k, v in other.state_dict().items()}
    net.load_state_dict(weights, assign=True)
    assert _flat_now(net)
    assert torch.equal(net(**_x(net)).h, other(**_x(other)).h)
    saved = io.BytesIO()
    torch.save(net.state_dict(), saved)
    saved.seek(0)
    fresh = _net(LSTM)
    fresh.load_state_dict(torch.load(saved))
    assert _flat_now(fresh) and torch.equal(fresh(**_x(fresh)).h, other(**_x(other)).h)


@pytest.mark.parametrize("spec", [LSTM, GRU], ids=["lstm", "gru"])
def test_the_buffer_through_autograd_gives_what_joined_weights_give(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path a CUDA call takes while autograd records (`kernels._Flat`), run on a CPU: each parameter's gradient
    its rows of the buffer's; a parameter written into between forward and backward is an error, as in torch.nn."""
    net = _net(spec)
    net(**_x(net)).h.sum().backward()
    joined = {k: p.grad.clone() for k, p in net.named_parameters()}  # type: ignore[union-attr]
    net.zero_grad()
    monkeypatch.setattr(kernels, "_FLAT_AUTOGRAD", True)
    with mock.patch.object(kernels._Flat, "apply", wraps=kernels._Flat.apply) as through:
        net(**_x(net)).h.sum().backward()
    assert through.call_count == 1
    for k, p in net.named_parameters():
        assert torch.allclose(p.grad, joined[k], atol=1e-12), k  # type: ignore[arg-type]
    out = net(**_x(net)).h.sum()
    with torch.no_grad():
        next(net.parameters()).add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_cudnn_takes_a_laid_out_cell_as_it_is(grad: bool) -> None:
    """cuDNN warns where it repacks a cell's weights at its call (separate tensors, as joined by `cat`); the buffer
    it laid out itself (`torch._cudnn_rnn_flatten_weight`) it takes as it is, with autograd recording or not,
    and the module computes what it computes with joined weights."""
    torch.manual_seed(0)
    net = rnndsl.compile(LSTM).cuda()
    x = torch.randn(2, 5, 32, device="cuda")
    assert _flat_now(net)
    own = {k: v.detach().clone().requires_grad_(grad) for k, v in net.named_parameters()}
    with warnings.catch_warnings(record=True) as caught, torch.set_grad_enabled(grad):
        warnings.simplefilter("always")
        joined = functional_call(net, own, (x,)).h
        repacked = [w for w in caught if "contiguous chunk" in str(w.message)]
        del caught[:]
        out = net(x).h
        if grad:
            out.sum().backward()
    assert repacked, "cuDNN no longer warns when it repacks: this test cannot tell the two apart"
    assert not [w for w in caught if "contiguous chunk" in str(w.message)]
    assert torch.allclose(out, joined, atol=1e-6)


def test_frozen_weights_written_into_before_backward_leave_the_gradient_of_the_forward() -> None:
    """A frozen module while autograd records (the input's gradient wanted) joins its weights: the kernel keeps
    that copy, so a write into a parameter between forward and backward changes nothing the backward computes."""
    net = _net(LSTM).requires_grad_(False)
    x = _x(net)["x"].requires_grad_(True)
    net(x=x).h.sum().backward()
    want = x.grad.clone()  # type: ignore[union-attr]
    x.grad = None
    out = net(x=x).h.sum()
    with torch.no_grad():
        net.weight("g", "x").mul_(3)
    out.backward()
    assert torch.equal(x.grad, want)  # type: ignore[arg-type]


def test_the_buffer_through_autograd_can_be_differentiated_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gradient penalty through the CUDA path (run on a CPU): `_Flat`'s backward is slicing, itself recorded."""
    net = _net(LSTM)
    monkeypatch.setattr(kernels, "_FLAT_AUTOGRAD", True)
    x = _x(net)["x"].requires_grad_(True)
    (grad,) = torch.autograd.grad(net(x=x).h.pow(2).sum(), x, create_graph=True)
    grad.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
