"""Native steps (`backend.native_step`): a custom loop's elementwise work as generated C, forward and backward.

Each spec runs in float64 with its loops' native steps against the reference executor (outputs, state and every
gradient to 1e-10), with and without lengths, with autograd recording and without; the torch loop the call site
falls back to gives the generated loop's numbers exactly; loops the C cannot express keep the torch loop.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from _differential import compare, gradients_of_a_loss, random_inputs, randomize

import rnndsl
from rnndsl.backend import kernels, native
from rnndsl.lang.ops import ACTIVATIONS, OPS

EXAMPLES = Path(__file__).parent.parent / "examples"

CELLS = ["peephole_lstm", "indrnn", "topdown", "skip2", "clockwork", "bidirectional", "elman", "sru"]
CELLS += ["layernorm_lstm", "layernorm_gru", "jordan", "qrnn", "mingru"]
NATIVE = {name: (EXAMPLES / f"{name}.rnn").read_text() for name in CELLS}
NATIVE |= {
    # a second product inside the step: o reads the c of this step, so the step is two C calls around it
    "two blocks": """network N {
        input x: 3
        layer a: 5 tanh <- x, h[t-1]
        c = 0.5 * a + c[t-1] * 0.5
        layer o: 5 sigmoid <- c
        h = o * tanh(c)
        output h
    }""",
    # backward in time, a static input and a param read in the step, every op with a C form
    "functions": """network N {
        input x: 4
        input s: 4 static
        param p: 4 = uniform
        layer a: 4 <- x, h[t+1]
        u = exp(-abs(a)) + sqrt(1 + a * a) - log(2 + sin(a)) / (3 - cos(s))
        h = relu(u) * p - -tanh(h[t+1]) / 2
        output h
    }""",
    # layer_norm of a value computed in the same step, of a delayed one and of an outside sequence, read twice
    "norms": """network N {
        input x: 4
        layer a: 4 <- x, h[t-1]
        c = 0.5 * c[t-1] + tanh(a)
        h = layer_norm(c) * layer_norm(h[t-1]) + layer_norm(x) + 0.1 * layer_norm(c)
        output h
    }""",
    # a softmax layer in a group beside a tanh one, read two steps back and by the next step's expression
    "softmax": """network N {
        input x: 3
        layer p: 5 softmax <- x, p[t-2], q[t-1]
        layer q: 5 tanh <- x, p[t-2], q[t-1]
        r = p * q + 0.5 * r[t-1]
        output r
        output p
    }""",
    # no product in the step, backward in time: the whole run is one C call
    "whole, backward": """network N {
        input x: 3
        param u: 3 = uniform
        c = relu(x + u * c[t+1]) - 0.5 * c[t+2]
        output c
    }""",
    # no product in the step, a node that is not an output (inference keeps a ring of it)
    "whole, ringed": """network N {
        input x: 3
        param u: 3 = uniform
        a = tanh(x + u * c[t-1])
        c = 0.5 * c[t-2] + a * c[t-1]
        output c
    }""",
    # a layer of relu and one of exp, several sizes, a delay of three steps
    "sizes": """network N {
        input x: 2
        layer a: 6 relu <- x, b[t-3]
        layer b: 3 exp <- a
        d = 0.1 * b
        output d
    }""",
}

REFUSED = {
    "layer_norm of an expression": "network N { input x: 3\n h = tanh(layer_norm(x + h[t-1]))\n output h }",
    "softmax in an expression": "network N { input x: 3\n layer a: 3 <- x, h[t-1]\n h = softmax(a) * a\n output h }",
    "dropout": "network N { input x: 3\n layer h: 4 tanh dropout=0.5 <- x, h[t-1]\n output h }",
    "a node of size 1": "network N { input x: 3\n layer h: 1 tanh <- x, h[t-1]\n output h }",
    "an activation without a C form": "network N { input x: 3\n layer h: 4 gelu <- x, h[t-1]\n output h }",
}


def _net(spec: str, kinds: set[str] | bool = frozenset({"step"})) -> rnndsl.CompiledNetwork:  # type: ignore[assignment]
    return randomize(rnndsl.compile(spec, fuse_cells=kinds).double(), seed=3)


def _sources(net: rnndsl.CompiledNetwork) -> list[str]:
    """The C source of each loop with native steps, as the generated code holds it."""
    return re.findall(r'_S\d+ = r"""\n(.*?)"""', net.code(grad=True), re.S)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """The same random inputs at every run, whatever ran before (exp fed back can overflow on some draws)."""
    torch.manual_seed(0)


@pytest.fixture
def built() -> None:
    """Skip where no step kernel builds at all (no compiler, or none with glibc's vector maths); a spec whose
    kernel fails to build where the smallest one builds fails its test."""
    if not native.available():
        pytest.skip("no C compiler here")
    (smallest,) = _sources(rnndsl.compile("network N { input x: 2\n layer h: 2 tanh <- x, h[t-1]\n output h }"))
    if native.step_library(smallest, "f64") is None:
        pytest.skip(f"no step kernel builds here: {native.why_not('step')}")


@pytest.mark.parametrize("name", list(NATIVE))
@pytest.mark.parametrize("lengths", [False, True])
def test_native_steps_equal_the_reference(name: str, lengths: bool, built: None) -> None:
    net = _net(NATIVE[name])
    sources = _sources(net)
    assert sources and all(native.step_library(c, "f64") is not None for c in sources), native.why_not("step")
    call = random_inputs(net, "cpu", batch=3, steps=7)
    if lengths:
        call["lengths"] = torch.tensor([7, 2, 5])
    compare(net, **call)
    quiet = random_inputs(net, "cpu", batch=3, steps=7, grad=False)
    if lengths:
        quiet["lengths"] = call["lengths"]
    with torch.no_grad():  # autograd not recording: the native forward runs too, keeping rings only
        compare(net, **quiet)


def test_a_param_written_into_before_backward_leaves_the_gradient_of_the_forward(built: None) -> None:
    """The C reads a param's one row for every sequence: its own values where no backward follows, a copy where
    one does (as the joined weights are copies), so a write into it before backward changes nothing."""
    net = _net(NATIVE["functions"])
    call = random_inputs(net, "cpu", batch=3, steps=7)
    net(**call).h.sum().backward()
    want = {k: p.grad.clone() for k, p in net.named_parameters()}  # type: ignore[union-attr]
    net.zero_grad()
    out = net(**call).h.sum()
    assert _sources(net)
    with torch.no_grad():
        net.param("p").mul_(2)
    out.backward()
    for k, p in net.named_parameters():
        assert torch.equal(p.grad, want[k]), k  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["layernorm_lstm", "functions", "whole, ringed"])
@pytest.mark.parametrize("layout", ["strided", "expanded", "column-major"])
def test_parameters_laid_out_otherwise_give_the_reference(name: str, layout: str, built: None) -> None:
    """The C reads a pointer and assumes rows one after another: a param or weight that is a strided view (one
    set through `.data`, or handed over by `functional_call`) is made contiguous first, with autograd recording
    or not (a param read without a copy read every second unit)."""
    net = _net(NATIVE[name])
    gen = torch.Generator().manual_seed(7)
    for p in net.parameters():
        if layout == "expanded" and p.dim() == 1:  # a weight's rows all equal would leave layer_norm nothing
            p.data = (torch.rand(1, generator=gen, dtype=p.dtype) + 0.5).expand(p.shape)
        elif layout != "strided" and p.dim() == 2:
            p.data = (torch.randn(tuple(reversed(p.shape)), generator=gen, dtype=p.dtype) * 0.5).T
        else:
            p.data = (torch.randn((*p.shape, 2), generator=gen, dtype=p.dtype) * 0.5)[..., 0]
        assert not p.is_contiguous()
    assert _sources(net)
    compare(net, **random_inputs(net, "cpu", batch=3, steps=5))
    with torch.no_grad():
        compare(net, **random_inputs(net, "cpu", batch=3, steps=5, grad=False))


# a tanh layer beside a plain one: one row a thread at B = 2, where an inlined loop over units took other vector
# paths (lanes of 4, of 2, scalar tanh: a few ulps apart) for one row than for several (found by a fuzz run)
NATIVE_SPLIT = {**NATIVE, "tanh": "network N { input x: 3\n layer a: 4 <- x\n layer n: 4 tanh <- x, h[t-1]\n"
                " h = a + n\n output h }"}  # fmt: skip


@pytest.mark.parametrize("batch", [2, 5])
@pytest.mark.parametrize("name", ["tanh", "layernorm_lstm", "softmax", "whole, ringed", "whole, backward", "qrnn"])
def test_rows_split_among_threads_give_the_numbers_of_one_thread(
    name: str, batch: int, built: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each C call's rows split among torch's threads (every call, the grain set to 0): the reference's numbers
    and gradients, and bitwise those of one thread (each row's arithmetic is the same wherever it runs: the loop
    over units is one function, not inlined into the loop over rows)."""
    if not native.shared_openmp():
        pytest.skip("torch's threads are not GNU OpenMP's here: the C keeps one thread")
    net = _net(NATIVE_SPLIT[name])
    call = random_inputs(net, "cpu", batch=batch, steps=20)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, want = gradients_of_a_loss(net, call)
        torch.set_num_threads(2)
        monkeypatch.setattr(kernels, "STEP_GRAIN", 0)
        given: list[int] = []
        split = kernels.step_threads
        monkeypatch.setattr(kernels, "step_threads", lambda values: given.append(split(values)) or given[-1])
        compare(net, **call)
        _, got = gradients_of_a_loss(net, call)
        with torch.no_grad():
            compare(net, **random_inputs(net, "cpu", batch=batch, steps=20, grad=False))
    finally:
        torch.set_num_threads(threads)
    assert len(given) >= 3 and set(given) == {2}  # forward and backward, recording and not
    for a, b in zip(want, got, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["functions", "layernorm_lstm", "whole, ringed"])
def test_an_empty_batch_gives_empty_outputs(name: str, built: None) -> None:
    """No rows: nothing for the C to do (a param's row cannot be taken from its (0, H) expansion either)."""
    net = _net(NATIVE[name])
    call = random_inputs(net, "cpu", batch=0, steps=4)
    out = net(**call)
    with torch.no_grad():
        quiet = net(**call)
    for k, size in ((k, net.network.by_name[k].size) for k in out):
        assert out[k].shape == quiet[k].shape == (0, 4, size)


@pytest.mark.parametrize("name", ["functions", "peephole_lstm", "indrnn"])
def test_an_output_of_one_sequence_is_a_tensor_of_its_own(name: str, built: None) -> None:
    """At B = 1 the C's steps, transposed, are already contiguous: the output is a copy all the same, so an
    in-place op on it before backward is an in-place op on a tensor of its own, not on the loop's kept buffer."""
    net = _net(NATIVE[name])
    call = random_inputs(net, "cpu", batch=1, steps=5)
    assert _sources(net)
    params = list(net.parameters())
    out = net(**call)
    key = next(iter(out))
    want = torch.autograd.grad((out[key] * 2).sum(), params, allow_unused=True)
    out = net(**call)
    out[key].mul_(2)
    got = torch.autograd.grad(out[key].sum(), params, allow_unused=True)
    for a, b in zip(want, got, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


def _one_thread_in_a_fork(queue: Any) -> None:
    torch.set_num_threads(1)  # what a forked worker sets (torch's DataLoader does): OpenMP's pool did not survive
    net = _net(NATIVE["layernorm_lstm"])
    with torch.no_grad():
        queue.put(float(net(**random_inputs(net, "cpu", batch=3, steps=5, grad=False)).h.sum()))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_a_process_forked_after_threads_runs_the_c_on_one(built: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a parallel region in this process, a forked child at one thread (as torch's DataLoader workers set)
    runs its C steps: at one thread they do not enter OpenMP at all, as torch's own ops do not (libgomp's pool
    does not survive a fork)."""
    if not native.shared_openmp():
        pytest.skip("torch's threads are not GNU OpenMP's here: the C keeps one thread")
    net = _net(NATIVE["layernorm_lstm"])
    monkeypatch.setattr(kernels, "STEP_GRAIN", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            net(**random_inputs(net, "cpu", batch=4, steps=5, grad=False))  # the pool's threads start here
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_one_thread_in_a_fork, args=(queue,))
        child.start()
        child.join(60)
        hung = child.is_alive()
        if hung:
            child.kill()
    finally:
        torch.set_num_threads(threads)
    assert not hung and child.exitcode == 0 and math.isfinite(queue.get(timeout=5))


def test_a_call_of_one_step_keeps_torchs_loop(built: None) -> None:
    """A native loop's setup, and a generated backward's, do not pay off over one step (streaming, beam search): a
    call of one step runs the plain loop, with autograd recording or not, the reference's numbers and gradients;
    from two steps on, the native steps run."""
    net = _net(NATIVE["two blocks"])
    x = torch.randn(3, 1, 3, dtype=torch.float64, requires_grad=True)
    with mock.patch.object(kernels, "step_ready", wraps=kernels.step_ready) as native_steps:
        with torch.no_grad():
            net(x)
        compare(net, x=x)
        assert native_steps.call_count == 0
        with torch.no_grad():
            net(torch.cat([x, x], 1))
        assert native_steps.call_count == 1
        net(torch.cat([x, x], 1))
        assert native_steps.call_count == 2


ELEMENTWISE = [op.name for op in OPS.values() if op.c is not None and not op.row_wise and not op.step]
# as a layer's activation, a C form whose derivative follows from the output (the others keep torch's loop),
# defined for every input (sqrt is not: a negative pre-activation gives NaN on both sides)
C_ACTIVATIONS = [
    a.name
    for a in ACTIVATIONS.values()
    if a.c is not None and "{x}" not in (a.c_grad or "{x}") and torch.isfinite(a.apply([-torch.ones(3)])).all()
]


@pytest.mark.parametrize("fn", ELEMENTWISE)
def test_every_function_with_a_c_form_equals_the_reference(fn: str, built: None) -> None:
    """Each op's `c` and `c_grad`, in a loop, on a positive argument (log, sqrt)."""
    step = f"h = 0.5 * {fn}(0.5 + 0.25 * a * a) + 0.1 * h[t-1]"
    net = _net(f"network N {{ input x: 3\n layer a: 3 <- x, h[t-1]\n {step}\n output h }}")
    assert _sources(net)
    compare(net, **random_inputs(net, "cpu", batch=2, steps=4))


@pytest.mark.parametrize("act", C_ACTIVATIONS)
def test_every_activation_with_a_c_form_equals_the_reference(act: str, built: None) -> None:
    # small weights: exp fed back stays finite
    net = randomize(rnndsl.compile(f"network N {{ input x: 3\n layer h: 4 {act} <- x, h[t-1]\n output h }}"), 3, 0.2)
    assert _sources(net.double())
    compare(net, **random_inputs(net, "cpu", batch=2, steps=4))


@pytest.mark.parametrize("name", ["peephole_lstm", "skip2", "sizes"])
def test_a_given_state_gets_its_gradient(name: str, built: None) -> None:
    net = _net(NATIVE[name])
    first = net(**random_inputs(net, "cpu", batch=3, steps=4, grad=False))
    assert first.state is not None
    call = random_inputs(net, "cpu", batch=3, steps=5)
    call["state"] = {k: v.detach().clone().requires_grad_() for k, v in first.state.items()}
    compare(net, **call)


@pytest.mark.parametrize("name", ["peephole_lstm", "two blocks", "functions"])
def test_float32_is_close_to_the_torch_loop(name: str, built: None) -> None:
    fast, loop = (rnndsl.compile(NATIVE[name], fuse_cells=k) for k in ({"step"}, False))
    randomize(fast, seed=5)
    loop.load_state_dict(fast.state_dict())
    call = random_inputs(fast, "cpu", batch=4, steps=9, dtype=torch.float32)
    for a, b in zip(*(gradients_of_a_loss(net, call)[1] for net in (fast, loop)), strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)  # float32 rounding over 9 steps


@pytest.mark.parametrize("name", ["peephole_lstm", "two blocks", "skip2"])
def test_where_the_c_cannot_run_the_torch_loop_gives_the_same_numbers(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call site's other choice is the generated loop itself: equal to `fuse_cells=False` exactly."""
    monkeypatch.setattr(kernels, "step_ready", lambda source, like: False)
    fast, loop = _net(NATIVE[name]), _net(NATIVE[name], kinds=False)
    call = random_inputs(fast, "cpu", batch=3, steps=6)
    for a, b in zip(*(gradients_of_a_loss(net, call)[1] for net in (fast, loop)), strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a, b)


def test_gradcheck(built: None) -> None:
    net = _net(NATIVE["two blocks"])
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: net(x=x)["h"], (x,))


@pytest.mark.parametrize("name", list(REFUSED))
def test_what_the_c_cannot_express_keeps_the_torch_loop(name: str) -> None:
    assert "K.step_ready(" not in rnndsl.compile(REFUSED[name], fuse_cells={"step"}).code(grad=True)


def test_a_backward_loop_with_lengths_keeps_the_torch_loop() -> None:
    net = rnndsl.compile(NATIVE["functions"], fuse_cells={"step"})
    assert "K.step_ready(" in net.code(grad=True)
    assert "K.step_ready(" not in net.code(lengths=True, grad=True)


@pytest.mark.parametrize("name", ["indrnn", "sru", "qrnn", "mingru", "whole, backward", "whole, ringed"])
def test_a_loop_with_no_product_runs_whole_in_one_call(name: str) -> None:
    """No matrix product in the step: one C call a direction (and on a CPU a loop linear in its past takes it
    over the linear scan); a step with products is one call a step."""
    code = rnndsl.compile(NATIVE[name]).code(grad=True)
    assert "K.run_whole(" in code and "K.linear_scan(" not in code and "K.step_functions(" not in code
    assert "K.run_whole(" not in rnndsl.compile(NATIVE["peephole_lstm"]).code(grad=True)
    if name in ("qrnn", "mingru"):  # where the C is not the kinds' choice, the linear scan runs
        assert "K.linear_scan(" in rnndsl.compile(NATIVE[name], fuse_cells={"linear"}).code(grad=True)


@pytest.mark.parametrize("name", ["layernorm_lstm", "sizes", "whole, ringed"])
def test_a_call_autograd_does_not_record_keeps_rings(name: str, built: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a backward to come, a node whose steps are not an output keeps its last k + 1 values, not all T
    (inference on a long sequence needs no buffer of T steps per node); while autograd records, every step."""
    net = _net(NATIVE[name])
    steps, seen = 50, []
    buffers = kernels.pointers
    monkeypatch.setattr(kernels, "pointers", lambda *ts: seen.append(ts) or buffers(*ts))
    call = random_inputs(net, "cpu", batch=7, steps=steps, grad=False)
    for records in (False, True):
        seen.clear()
        with torch.set_grad_enabled(records):
            net(**call)
        # the first loop's value buffers (k + T or k + 1, B, H): not its outside sequences (B, T, H)
        rows = sorted({t.shape[0] for t in seen[0] if t is not None and t.dim() == 3 and t.shape[0] != 7})
        assert rows[-1] > steps  # the outputs' buffers: every step
        assert (rows[0] <= 4) != records  # the others: a ring of k + 1 (k <= 3 here), or every step


def test_a_workspace_hands_out_a_buffer_again_only_when_nothing_holds_it() -> None:
    ws, like = kernels.Workspace(), torch.zeros((), dtype=torch.float64)
    first = ws.empty("h", (3, 2, 4), like)
    ptr = first.data_ptr()
    held = ws.empty("h", (3, 2, 4), like)  # the first still lives: another buffer
    assert held.data_ptr() != ptr
    del first
    again = ws.empty("h", (3, 2, 4), like)
    assert again.data_ptr() == ptr and again.shape == (3, 2, 4) and again.dtype == torch.float64
    del again, held
    assert ws.empty("c", (3, 2, 4), like).data_ptr() not in (ptr,)  # a slot of its own
    assert ws.empty("h", (3, 2, 4), torch.zeros(())).dtype == torch.float32  # another dtype: another buffer
    # a view kept by a graph for its backward holds the buffer until the backward has run
    x = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    buf = ws.empty("h", (3, 2, 4), like)
    ptr = buf.data_ptr()
    y = buf.copy_(x.detach()).mul(x)  # mul keeps both of its inputs
    del buf
    other = ws.empty("h", (3, 2, 4), like)
    assert other.data_ptr() != ptr
    y.sum().backward()
    del y
    assert ws.empty("h", (3, 2, 4), like).data_ptr() == ptr  # (`other` still held)
    # shapes a slot keeps: the last SHAPES of them
    for rows in range(5, 5 + kernels.Workspace.SHAPES + 1):
        ws.empty("h", (rows, 2, 4), like)
    assert [t.shape[0] for t in ws._kept["h"]] == list(range(4 + kernels.Workspace.SHAPES + 1, 5, -1))


@pytest.mark.parametrize("name", ["layernorm_lstm", "indrnn", "sizes"])
@pytest.mark.parametrize(("batch", "steps"), [(1, 6), (3, 6), (3, 1)])
def test_buffers_kept_between_calls_leave_earlier_results_alone(name: str, batch: int, steps: int, built: None) -> None:
    """Calls that reuse a loop's value buffers give what fresh buffers give, and an earlier call's outputs, state
    and gradients stay as they were (at batch 1 or one step an output's transpose is contiguous: it could have
    been a view of a buffer)."""
    net = _net(NATIVE[name])
    calls = [random_inputs(net, "cpu", batch=batch, steps=steps, grad=True) for _ in range(3)]

    def run(call: dict) -> list[torch.Tensor | None]:
        out, values = gradients_of_a_loss(net, call)
        return values + [v.detach() for v in (out.state or {}).values()]

    results, kept = [], []
    for call in calls:
        results.append(run(call))
        kept.append([None if v is None else v.clone() for v in results[-1]])
    for call, r in zip(calls, results, strict=True):  # again: each call now on buffers an earlier call used
        torch.testing.assert_close(run(call), r, rtol=0, atol=0)
    torch.testing.assert_close(results, kept, rtol=0, atol=0)
    # graphs alive together (each keeps its buffers until its backward): the same outputs and gradients
    outs = [net(**call) for call in calls]
    for out, k in zip(outs, kept, strict=True):
        values = list(out.values())
        torch.testing.assert_close([v.detach() for v in values], k[: len(values)], rtol=0, atol=0)
    params = list(net.parameters())
    for call, out in reversed(list(zip(calls, outs, strict=True))):
        grads = torch.autograd.grad(sum(v.sum() for v in out.values()), params)
        alone = torch.autograd.grad(sum(v.sum() for v in net(**call).values()), params)
        torch.testing.assert_close(grads, alone, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["layernorm_lstm", "indrnn"])
def test_inference_mode_calls_keep_nothing_for_training_calls(name: str, built: None) -> None:
    """A validation pass under `torch.inference_mode` (whose tensors cannot be written outside it, nor saved for
    a backward) between training calls: the training calls after it run on buffers of their own."""
    net = _net(NATIVE[name])
    call = random_inputs(net, "cpu", batch=3, steps=5, grad=True)
    with torch.inference_mode():  # first, as a trainer's sanity check of the validation step runs
        values = net(**{k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in call.items()})
        values = [v.clone() for v in values.values()]
    after = gradients_of_a_loss(net, call)[1]
    torch.testing.assert_close(values, after[: len(values)], rtol=0, atol=0)
    torch.testing.assert_close(gradients_of_a_loss(net, call)[1], after, rtol=0, atol=0)


def test_calls_from_threads_get_buffers_of_their_own(built: None) -> None:
    """One module called from several threads at once (its C runs without the GIL): each call gets buffers no
    other call holds, so each gives what it gives alone."""
    net = _net(NATIVE["layernorm_lstm"])
    calls = [random_inputs(net, "cpu", batch=4, steps=40, grad=True) for _ in range(4)]
    alone = [gradients_of_a_loss(net, call)[1] for call in calls]
    got: dict[int, list] = {}

    def run(i: int) -> None:
        for _ in range(3):
            got[i] = gradients_of_a_loss(net, calls[i])[1]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, expected in enumerate(alone):
        torch.testing.assert_close(got[i], expected, rtol=0, atol=0)


def test_a_module_moved_drops_its_kept_buffers(built: None) -> None:
    net = _net(NATIVE["indrnn"])
    net(**random_inputs(net, "cpu", batch=3, steps=5, grad=True))
    workspaces = [w for fn in net._code.values() for w in fn.__globals__.values() if isinstance(w, kernels.Workspace)]
    assert workspaces and any(w._kept for w in workspaces)
    net.float()
    assert not any(w._kept for w in workspaces) and "_starts" not in net.__dict__


def test_the_kinds_choose_native_steps() -> None:
    spec = NATIVE["peephole_lstm"]
    assert "K.step_ready(" not in rnndsl.compile(spec, fuse_cells=False).code(grad=True)
    assert "K.step_ready(" not in rnndsl.compile(spec, fuse_cells={"lstm"}).code(grad=True)
    assert "K.step_ready(" in rnndsl.compile(spec, fuse_cells={"step"}).code(grad=True)


def _gcc() -> str | None:
    """The C compiler native kernels are built with, where it is gcc (whose reports the test below reads)."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None or not native.available():
        return None
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    return compiler if "Free Software Foundation" in version else None


_UNIT_LOOP = re.compile(r"for \(long j = 0; j < (\d+); j\+\+\)")
_DONE = re.compile(r":(\d+):\d+: optimized: (loop vectorized|Loop \d+ distributed: split to 0 loops)")
VECTORISED = {f"function {fn}": f"h = 0.5 * {fn}(0.5 + 0.25 * a * a) + 0.1 * h[t-1]" for fn in ELEMENTWISE}
VECTORISED |= {f"activation {act}": f"layer h: 32 {act} <- x, h[t-1]" for act in C_ACTIVATIONS}


@pytest.mark.parametrize("name", [*VECTORISED, "indrnn", "peephole_lstm", "layernorm_lstm", "sru"])
def test_every_loop_over_units_vectorises(name: str, tmp_path: Path) -> None:
    """Each loop over units, forward and backward, in both C types, is vectorised by gcc (or is a copy it
    makes a library call; gcc is told not to merge equal functions, whose copies it reports nothing of): what
    the C steps' speed rests on. A select in a derivative (relu's) once kept its loop scalar under gcc's
    default trapping maths, 4x slower than the vectorised one; `-fno-trapping-math` lifted it."""
    compiler = _gcc()
    if compiler is None:
        pytest.skip("the vectorisation report read here is gcc's")
    if name in VECTORISED:
        step = VECTORISED[name]
        spec = f"network N {{ input x: 3\n layer a: 32 <- x, h[t-1]\n {step}\n output h }}"
        if name.startswith("activation"):
            spec = f"network N {{ input x: 3\n {step}\n output h }}"
    else:
        spec = NATIVE[name]
    sources = _sources(rnndsl.compile(spec, fuse_cells={"step"}))
    assert sources, "no native steps"
    for n, source in enumerate(sources):
        path = tmp_path / f"kernel{n}.c"
        path.write_text(source)
        lines = source.splitlines()
        for c_type in ("F32", "F64"):
            flags = [*native.FLAGS, *native.STEP_FLAGS, f"-DRNNDSL_{c_type}", "-c", "-o", str(tmp_path / "k.o")]
            report = subprocess.run(
                [compiler, *flags, "-fno-ipa-icf", "-fopt-info-vec-optimized", "-fopt-info-loop-optimized", str(path)],
                capture_output=True,
                text=True,
            )
            assert report.returncode == 0, report.stderr
            done = {int(m.group(1)) for m in _DONE.finditer(report.stderr)}
            start = lines.index(f"#ifdef RNNDSL_{c_type}")
            end = lines.index("#endif", start)
            loops = [i + 1 for i in range(start, end) if (m := _UNIT_LOOP.search(lines[i])) and int(m.group(1)) >= 16]
            scalar = [i for i in loops if i not in done]
            assert loops and not scalar, f"{c_type}: loops kept scalar:\n" + "\n\n".join(
                "\n".join(lines[i - 2 : i + 8]) for i in scalar
            )
