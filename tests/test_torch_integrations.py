"""A compiled network under torch.compile, torch.jit.script, torch.jit.trace and torch.export.

What works is tested against eager (outputs and gradients); what does not is pinned down by its exact
exception, with the reason next to it (docs/reliability.md keeps the summary). Two networks: a Jordan
network, whose loop runs in the generated Python, and an LSTM, whose loop runs on torch's fused kernel.

- torch.compile ("eager", "aot_eager"): works, same outputs and gradients, with and without lengths.
  Dynamo unrolls the time loop, so each new sequence length compiles again (and compile time grows
  with T). `fullgraph=True` holds for the generated loop once the module has run once; the fused-cell
  path breaks the graph (`warnings.filterwarnings` in `kernels.fused`), and so does the first call of a
  module (code generation), and `lengths` (validation reads their values). "inductor" works too but
  takes tens of seconds on a small CPU: marked slow. Training a float32 LSTM on a CPU, the LSTM runs outside
  the graphs (AOT autograd cannot compile the backward of oneDNN's LSTM in torch 2.13): a graph break.
- torch.jit.script: not supported (forward takes **inputs; the generated function has no source).
- torch.jit.trace / torch.export: not on the module itself (it returns `Outputs`, which neither knows);
  through a wrapper returning tensors they work for the traced sequence length only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch._dynamo
from torch import nn

import rnndsl
from rnndsl.backend import kernels
from rnndsl.runtime.reference import reference

SPECS = {
    "jordan": "network J { input x: 4\n layer h: 8 tanh <- x, y[t-1]\n layer y: 3 softmax <- h\n"
    " init y = learned\n output y }",
    "lstm": "network L { input x: 4\n layer i: 5 sigmoid <- x, h[t-1]\n layer f: 5 sigmoid <- x, h[t-1]\n"
    " layer g: 5 tanh <- x, h[t-1]\n layer o: 5 sigmoid <- x, h[t-1]\n c = f * c[t-1] + i * g\n"
    " h = o * tanh(c)\n output h }",
    # a QRNN: its loop, linear in c's past, is one call of the linear-scan kernel (a C call a tracer cannot see:
    # traced, it runs as tensor ops)
    "qrnn": "network Q { input x: 4\n layer z: 5 tanh <- x, x[t-1]\n layer f: 5 sigmoid <- x, x[t-1]\n"
    " c = f * c[t-1] + (1 - f) * z\n h = tanh(c)\n output h }",
    # skip-2: h read two steps back, so its state is the last two steps (a history deeper than one)
    "skip2": "network S { input x: 4\n layer h: 5 tanh <- x, h[t-1], h[t-2]\n output h }",
    # params read in the step beside a sequence's value: the variants without a generated backward read each
    # as its one row, (H,), for broadcasting (`codegen._row_params`)
    "params": "network P { input x: 4\n param g: 5 = uniform\n param b: 5 = uniform\n layer a: 5 <- x, h[t-1]\n"
    " h = tanh(g * layer_norm(a) + b)\n output h }",
}
OUT = {"jordan": "y", "lstm": "h", "qrnn": "h", "skip2": "h", "params": "h"}
B, T = 3, 3

# Expected noise: torch.jit is deprecated in this torch, tracing turns shape checks into constants, and
# TorchScript objects to the module's instance annotations before it fails.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.* is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning"),
]


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    """Every test compiles from scratch: CompiledNetwork.forward is one code object for all modules, and
    after dynamo's recompile limit it would silently run eagerly."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def network(name: str, warm: bool = True) -> rnndsl.CompiledNetwork:
    torch.manual_seed(0)
    net = rnndsl.compile(SPECS[name]).double()
    if warm:  # the first call generates and execs the forward code
        net(torch.zeros(1, 2, 4, dtype=torch.float64))
    return net


def inputs(steps: int = T) -> torch.Tensor:
    return torch.randn(B, steps, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(steps))


def run(
    model: nn.Module, net: rnndsl.CompiledNetwork, name: str, x: torch.Tensor, lengths: torch.Tensor | None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The output, and the gradients of a loss in every parameter and in the input."""
    x = x.clone().requires_grad_()
    net.zero_grad()
    out = model(x, lengths=lengths)[OUT[name]]
    (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum().backward()
    assert x.grad is not None
    return out.detach(), [p.grad.clone() for p in net.parameters() if p.grad is not None] + [x.grad]


# ---- torch.compile --------------------------------------------------------------------------------------


def assert_same(model: nn.Module, net: rnndsl.CompiledNetwork, name: str, lengths: torch.Tensor | None) -> None:
    got, grads = run(model, net, name, inputs(), lengths)  # first: a cold module generates its code here
    expected, expected_grads = run(net, net, name, inputs(), lengths)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert len(grads) == len(expected_grads) == len(list(net.parameters())) + 1
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("name", list(SPECS))
def test_compile_matches_eager(name: str, backend: str) -> None:
    """On a module never called before: its first call, which generates the code, is a graph break."""
    net = network(name, warm=False)
    assert_same(torch.compile(net, backend=backend), net, name, None)


@pytest.mark.parametrize("name", list(SPECS))
def test_compile_with_lengths_matches_eager(name: str) -> None:
    net = network(name)
    assert_same(torch.compile(net, backend="eager"), net, name, torch.tensor([3, 1, 2]))


def test_fullgraph_recompiles_for_each_sequence_length() -> None:
    """The generated loop compiles to one graph. It is a Python `for t in range(T)`: dynamo unrolls it, so T
    is baked into each graph and a new T compiles a new graph (the results stay right)."""
    from torch._dynamo.utils import counters

    net = network("jordan")
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    before = counters["stats"]["unique_graphs"]
    for steps in (2, 3, 4):
        torch.testing.assert_close(compiled(inputs(steps)).y, net(inputs(steps)).y, rtol=1e-12, atol=1e-12)
    assert counters["stats"]["unique_graphs"] - before == 3


def test_fullgraph_holds_the_fused_cell_kernel() -> None:
    """After a first eager call (which generates the code), a standard cell on torch's fused kernel
    compiles as one graph and gives the eager result."""
    net = network("lstm")
    net(inputs())
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(inputs()).h, net(inputs()).h)


def test_fullgraph_breaks_on_lengths() -> None:
    """Validation checks the lengths' values (`low < 1 or high > time` on `int(lengths.min())`): a Python
    branch on tensor data, which a single graph cannot hold."""
    compiled = torch.compile(network("jordan"), backend="eager", fullgraph=True)
    with pytest.raises(torch._dynamo.exc.UserError, match="data-dependent expression"):
        compiled(inputs(), lengths=torch.tensor([3, 1, 2]))


def test_fullgraph_breaks_on_the_first_call() -> None:
    """The first call of a module generates its code (networkx, exec): dynamo cannot trace that. Without
    fullgraph it is a graph break and the call works; with it, run the module once eagerly first."""
    compiled = torch.compile(network("jordan", warm=False), backend="eager", fullgraph=True)
    with pytest.raises(torch._dynamo.exc.Unsupported):
        compiled(inputs())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SPECS))
def test_compile_inductor(name: str) -> None:
    """Slow: on a 2-core CPU the first inductor compile took 16 s (Jordan) to 20 s (LSTM) for the forward
    and 28 s / 26 s with the backward, against about a second for "eager"."""
    net = network(name)
    compiled = torch.compile(net, backend="inductor")
    expected, expected_grads = run(net, net, name, inputs(), None)
    got, grads = run(compiled, net, name, inputs(), None)
    torch.testing.assert_close(got, expected)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e)


def _float32_lstm(backward: bool = False) -> rnndsl.CompiledNetwork:
    """The LSTM in float32, run once; `backward`: its loop runs backward in time (h[t+1], c[t+1])."""
    torch.manual_seed(0)
    net = rnndsl.compile(SPECS["lstm"].replace("[t-1]", "[t+1]") if backward else SPECS["lstm"])
    assert "K.fused('lstm'" in net.code()
    net(torch.zeros(1, 2, 4))
    return net


def _assert_compiled_training_matches_eager(net: rnndsl.CompiledNetwork, backend: str) -> None:
    x = torch.randn(B, T, 4)  # not requiring grad, as a training batch does (one that does compiled before too)
    results = []
    for model in (net, torch.compile(net, backend=backend)):
        out = model(x).h
        results.append((out.detach(), torch.autograd.grad((out * out).sum(), list(net.parameters()))))
    (expected, expected_grads), (got, grads) = results
    torch.testing.assert_close(got, expected)
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("backward", [False, True], ids=["forward_in_time", "backward_in_time"])
def test_compile_aot_eager_trains_a_float32_lstm(backward: bool) -> None:
    """Before the LSTM ran eagerly there (below) this raised "expected all tensors_saved_with_vc_check to be
    Tensors" in AOT autograd's backward of oneDNN's LSTM (float32 on a CPU; float64 does not run oneDNN)."""
    _assert_compiled_training_matches_eager(_float32_lstm(backward), "aot_eager")


def test_compiled_float32_lstm_training_runs_the_lstm_eagerly() -> None:
    """AOT autograd cannot compile the backward of oneDNN's LSTM in torch 2.13 (pytorch/pytorch#158007: float32 on
    a CPU, while autograd records), so there the fused LSTM runs outside the compiled graphs (a graph break); float64,
    a call without autograd and a frozen LSTM keep `torch.lstm` in the graph."""
    traced: list[set[str]] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> object:
        traced.append({getattr(n.target, "__name__", str(n.target)) for n in gm.graph.nodes})
        return gm.forward

    frozen = _float32_lstm().requires_grad_(False)  # nothing to differentiate: AOT compiles the kernel
    for net, grad, in_graph in (
        (_float32_lstm(), True, False),
        (_float32_lstm(), False, True),
        (frozen, True, True),
        (network("lstm"), True, True),
    ):
        traced.clear()
        torch._dynamo.reset()
        x = torch.randn(B, T, 4, dtype=net.like.dtype)
        with torch.set_grad_enabled(grad):
            torch.testing.assert_close(torch.compile(net, backend=backend)(x).h, net(x).h)
        assert traced and any("lstm" in ops for ops in traced) == in_graph, (net.like.dtype, grad, traced)
        assert not any("lstm_cell" in ops for ops in traced)


def test_a_network_run_inside_a_compile_session_runs_once() -> None:
    """A backend may run code eagerly while dynamo compiles (`torch.compiler.is_compiling()` is true there): the LSTM
    that leaves the graph must not try to leave it again (it recursed without end)."""
    net, x = _float32_lstm(), torch.randn(B, T, 4)
    expected = net(x).h

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> object:
        torch.testing.assert_close(net(x).h, expected)
        return gm.forward

    torch.compile(lambda t: t * 2, backend=backend)(x)


def test_fullgraph_cannot_hold_float32_lstm_training() -> None:
    """The error points at the line of `kernels.fused` that leaves the graph (`torch.compiler.disable`, made there so
    that importing rnndsl does not import dynamo)."""
    net = _float32_lstm()
    with pytest.raises(torch._dynamo.exc.Unsupported, match=r"(?s)function `disable`.*torch.compiler.disable\(_eager"):
        torch.compile(net, backend="eager", fullgraph=True)(torch.randn(B, T, 4)).h.sum().backward()


@pytest.mark.slow
def test_compile_inductor_trains_a_float32_lstm() -> None:
    """Slow (inductor). Before the LSTM ran eagerly there this raised "expected Tensor() for op:
    torch.ops.aten.mkldnn_rnn_layer.default" in the compiled backward."""
    _assert_compiled_training_matches_eager(_float32_lstm(), "inductor")


# ---- torch.jit.script ------------------------------------------------------------------------------------


def test_jit_script_is_not_supported() -> None:
    """TorchScript compiles Python source with static types: forward takes its inputs as **kwargs ..."""
    with pytest.raises(torch.jit.frontend.NotSupportedError, match="variable number of arguments"):
        torch.jit.script(network("jordan"))


def test_jit_script_of_the_generated_function_is_not_supported() -> None:
    """... and the generated function is built by exec: it has no module nor source file to compile."""
    net = network("jordan")
    with pytest.raises(RuntimeError, match="__module__ can't be None"):
        torch.jit.script(net._compiled(False))


# ---- torch.jit.trace and torch.export through a wrapper ---------------------------------------------------


class Tensors(nn.Module):
    """What trace and export need: a module that takes and returns plain tensors."""

    def __init__(self, net: rnndsl.CompiledNetwork, output: str) -> None:
        super().__init__()
        self.net, self.output = net, output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[self.output]


def test_jit_trace_needs_tensor_outputs() -> None:
    """`Outputs` is a dict, which strict tracing refuses (its keys could depend on the inputs)."""
    with pytest.raises(RuntimeError, match="Encountering a dict at the output of the tracer"):
        torch.jit.trace(network("jordan"), (inputs(),), check_trace=False)


@pytest.mark.parametrize("name", list(SPECS))
def test_jit_trace_works_for_the_traced_length_only(name: str) -> None:
    net = network(name)
    # check_trace=False: the check re-traces under no_grad, and the fused kernel's `train` flag (taken from
    # torch.is_grad_enabled()) then differs, so the check reports "Graphs differed across invocations"
    traced = torch.jit.trace(Tensors(net, OUT[name]), (inputs(),), check_trace=False)
    torch.testing.assert_close(traced(inputs()), net(inputs())[OUT[name]], rtol=1e-12, atol=1e-12)
    if name == "jordan":  # the per-step list from `unbind` has T entries, baked into the trace
        with pytest.raises(RuntimeError, match="Expected 3 elements in a list but found 6"):
            traced(inputs(6))


@pytest.mark.parametrize("name", list(SPECS))
def test_jit_trace_of_one_step(name: str) -> None:
    """A streaming model traced at one step (the trace sees the length as a tensor)."""
    net = network(name)
    traced = torch.jit.trace(Tensors(net, OUT[name]), (inputs(1),), check_trace=False)
    torch.testing.assert_close(traced(inputs(1)), net(inputs(1))[OUT[name]], rtol=1e-12, atol=1e-12)


def test_jit_trace_check_fails_on_the_fused_cell() -> None:
    net = network("lstm")
    with pytest.raises(torch.jit.TracingCheckError, match="Graphs differed across invocations"):
        torch.jit.trace(Tensors(net, "h"), (inputs(),))


def test_export_of_the_network_itself() -> None:
    """Outputs is registered with torch's pytree: export sees its tensors, the state's included."""
    net = network("jordan")
    exported = torch.export.export(net, (inputs(),), strict=False).module()
    x = inputs() + 1
    out, expected = exported(x), net(x)
    assert isinstance(out, rnndsl.Outputs) and out.state is not None and expected.state is not None
    torch.testing.assert_close(out.y, expected.y, rtol=1e-12, atol=1e-12)
    for key in expected.state:
        torch.testing.assert_close(out.state[key], expected.state[key], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("strict", [False, True], ids=["non-strict", "strict"])
def test_export_works_for_the_exported_length_only(strict: bool) -> None:
    net = network("jordan")
    exported = torch.export.export(Tensors(net, "y"), (inputs(),), strict=strict)
    torch.testing.assert_close(exported.module()(inputs()), net(inputs()).y, rtol=1e-12, atol=1e-12)
    with pytest.raises(AssertionError, match=r"Guard failed: x\.size\(\)\[1\] == 3"):
        exported.module()(inputs(6))


def test_export_non_strict_of_the_fused_cell() -> None:
    net = network("lstm")
    exported = torch.export.export(Tensors(net, "h"), (inputs(),), strict=False)
    torch.testing.assert_close(exported.module()(inputs()), net(inputs()).h, rtol=1e-12, atol=1e-12)


def test_export_strict_of_the_fused_cell() -> None:
    net = network("lstm")
    net(inputs())  # the first call generates the code, which export cannot trace
    program = torch.export.export(Tensors(net, "h"), (inputs(),), strict=True)
    torch.testing.assert_close(program.module()(inputs()), net(inputs()).h)


@pytest.mark.parametrize("name", list(SPECS))
def test_export_with_a_dynamic_length_and_batch(name: str) -> None:
    """Non-strict export (torch's default) traces the variant whose loops are torch's `scan`: one program for
    every batch size and length. (It was refused before: the Python loop was unrolled at the example's T.)"""
    net = network(name)
    dims = {"x": {0: torch.export.Dim("B", min=1, max=64), 1: torch.export.Dim("T", min=2, max=1000)}}
    program = torch.export.export(Tensors(net, OUT[name]), (inputs(),), dynamic_shapes=dims, strict=False).module()
    for batch, steps in [(2, 3), (5, 17), (1, 40)]:
        x = torch.randn(batch, steps, inputs().shape[2], dtype=torch.float64)
        torch.testing.assert_close(program(x), net(x)[OUT[name]], rtol=1e-12, atol=1e-12)


# ---- torch.func, and second derivatives ----------------------------------------------------------


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_vmap_over_parameters_gives_each_sets_call(name: str, grad: bool) -> None:
    """Two sets of parameters at once (an ensemble): a torch.func transform gets the plain variant, whose loops
    are torch's ops (the loops' autograd.Function cannot run under vmap), also where a no_grad call of more than
    one step would take the native steps."""
    net = network(name)
    params = {k: v.detach() for k, v in net.named_parameters()}
    stacked = {k: torch.stack([v, v * 0.5]) for k, v in params.items()}
    x = inputs()
    with torch.set_grad_enabled(grad):
        both = torch.func.vmap(lambda p: torch.func.functional_call(net, p, (x,))[OUT[name]])(stacked)
        for i in range(2):
            one = torch.func.functional_call(net, {k: v[i] for k, v in stacked.items()}, (x,))[OUT[name]]
            torch.testing.assert_close(both[i], one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(SPECS))
def test_func_grad_gives_autograds_gradients(name: str) -> None:
    net = network(name)
    x = inputs()
    params = {k: v.detach() for k, v in net.named_parameters()}
    got = torch.func.grad(lambda p: torch.func.functional_call(net, p, (x,))[OUT[name]].sin().sum())(params)
    net.zero_grad()
    net(x)[OUT[name]].sin().sum().backward()
    for k, p in net.named_parameters():
        assert p.grad is not None
        torch.testing.assert_close(got[k], p.grad, rtol=1e-10, atol=1e-12)


def test_a_second_derivative_through_a_generated_backward_is_refused() -> None:
    """The generated backward is differentiable once: asked for a second derivative it says so (it came back
    without the loop's part before); the plain variant's autograd gives the reference's."""
    net = network("jordan")
    x = inputs().requires_grad_()
    with pytest.raises(RuntimeError, match=r"differentiable once\. Set `net\.generated_backward = False`"):
        torch.autograd.grad(net(x).y.sin().sum(), x, create_graph=True)

    def second(fn: object) -> torch.Tensor:
        (g,) = torch.autograd.grad(fn(x).y.sin().sum(), x, create_graph=True)  # type: ignore[operator]
        (gg,) = torch.autograd.grad(g.pow(2).sum(), x)
        return gg

    net.generated_backward = False
    want = second(lambda x: reference(net, x))
    assert want.abs().sum() > 0
    torch.testing.assert_close(second(net), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("backward", [False, True], ids=["forward_in_time", "backward_in_time"])
@pytest.mark.parametrize("lengths", [None, [4, 1, 3]], ids=["whole", "lengths"])
def test_a_fused_cell_under_torch_func_runs_the_kernels_maths(kind: str, backward: bool, lengths: list | None) -> None:
    """Under a torch.func transform a fused cell runs its maths in tensor ops (`kernels._cell_steps`): torch's
    sequence kernel's numbers, outputs and final state, with lengths and backward in time."""
    gen = torch.Generator().manual_seed(0)
    gates = {"lstm": 4, "gru": 3}.get(kind, 1)
    x = torch.randn(3, 4, 2, generator=gen, dtype=torch.float64)
    hx = tuple(torch.randn(1, 3, 5, generator=gen, dtype=torch.float64) for _ in range(2 if kind == "lstm" else 1))
    params = [torch.randn(gates * 5, n, generator=gen, dtype=torch.float64) for n in (2, 5)]
    params += [torch.randn(gates * 5, generator=gen, dtype=torch.float64) for _ in range(2)]
    lens = None if lengths is None else torch.tensor(lengths)
    want = kernels._eager(kind, x, hx, params, lens, backward)
    got = kernels._cell_steps(kind, x, hx, params, lens, backward)
    for a, b in zip(got, want, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
