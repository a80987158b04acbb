"""Kernels: the small tensor helpers that generated code calls, outside the per-step loop.

Takes tensors, gives tensors. Sequences are (batch, time, ...); a history is (batch, k, ...) oldest
first; token ids are int64 with -1 meaning "no token" (before the first step or past the last).
"""

from __future__ import annotations

import ctypes
import functools
import inspect
import re
import threading
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnndsl.backend import native

__all__ = [
    "attend",
    "attend_grad",
    "layer_norm",
    "layer_norm_backward",
    "cat",
    "drop_mask",
    "embed",
    "embed_rows",
    "every",
    "flat",
    "fused",
    "future",
    "keepable",
    "keeping",
    "last",
    "last_k",
    "linear_scan",
    "loop",
    "masked",
    "one_hot",
    "past",
    "pointers",
    "reverse",
    "run_whole",
    "scan",
    "sequence",
    "step_functions",
    "step_threads",
    "transformed",
    "step_ready",
    "steps",
    "sum_to",
    "untraced",
    "valid_mask",
    "vjp",
    "zeros",
    "Flat",
    "Workspace",
]


def past(seq: torch.Tensor, hist: torch.Tensor, d: int) -> torch.Tensor:
    """`seq[t-d]` for every t: the first d steps read the end of `hist`."""
    k, steps = hist.shape[1], seq.shape[1]
    # all of seq, not seq[:, :T - d]: torch.export would guard on T - d (and fix T = d + 1 for a dynamic T)
    return torch.cat([hist[:, k - d :], seq], 1)[:, :steps]


def future(seq: torch.Tensor, bound: torch.Tensor, d: int, lengths: torch.Tensor | None) -> torch.Tensor:
    """`seq[t+d]` for every t: steps at or past each sequence's end read `bound`."""
    steps = seq.shape[1]
    fill = (
        bound.unsqueeze(1).expand(-1, d, *bound.shape[1:])
        if bound.dim()
        else seq.new_full((seq.shape[0], d), int(bound))
    )
    out = torch.cat([seq[:, d:], fill], 1)[:, :steps]
    if lengths is None:
        return out
    ok = torch.arange(steps, device=seq.device).unsqueeze(0) + d < lengths.unsqueeze(1)
    if out.dim() == 3:
        return torch.where(ok.unsqueeze(2), out, bound.unsqueeze(1))
    return torch.where(ok, out, torch.full_like(out, -1))


def valid_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(batch, time, 1) bool: True where a step lies inside its sequence."""
    return (torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)


def embed(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`weight @ one_hot(ids)` for a weight written (out, vocabulary); id -1 gives zeros."""
    return embed_rows(ids, weight.t())


def embed_rows(ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rows of a (vocabulary, out) table for ids of any shape; id -1 gives zeros."""
    # on a GPU asking would wait for it, and a tracer cannot ask at all: mask always
    if ids.device.type == "cpu" and not torch.compiler.is_compiling() and bool((ids >= 0).all()):
        return F.embedding(ids, table)
    return F.embedding(ids.clamp(min=0), table) * (ids >= 0).unsqueeze(-1).to(table.dtype)


def one_hot(ids: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    """One-hot vectors of size n in the dtype of `like`; id -1 gives zeros."""
    return F.one_hot(ids.clamp(min=0), n).to(like.dtype) * (ids >= 0).unsqueeze(-1).to(like.dtype)


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """`layer_norm(v)`: over the vector (the last axis), eps 1e-5, no gain or bias (the spec writes them)."""
    return F.layer_norm(x, x.shape[-1:], eps=1e-5)


def attend(score: torch.Tensor, values: torch.Tensor, keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """`attend(score, values)`: the weighted sum of a memory's positions and its weights.

    `score` (..., S, 1) and `values` (..., S, H) run over the S positions of one memory (the axis before
    the vector; broadcasting the leading axes, so a step's scores (B, S, 1) or every step's (B, T, S, 1)
    meet the memory's (B, S, H) or (B, 1, S, H)); `keep` (B, S, 1) bool marks the positions inside each
    memory's length (None: all). The weights are a softmax of the scores over the kept positions.
    Gives the context (..., H) and the weights (..., S).
    """
    if keep is not None:
        keep = keep.view(keep.shape[0], *([1] * (score.dim() - 3)), *keep.shape[1:])
        score = score.masked_fill(~keep, float("-inf"))
    weights = torch.softmax(score, -2)
    return (weights * values).sum(-2), weights.squeeze(-1)


def attend_grad(
    grad: torch.Tensor, score: torch.Tensor, values: torch.Tensor, keep: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of `attend`'s context with respect to its scores and its values, given the context's
    gradient `grad` (..., H): the generated backward's derivative of attention (the weights recomputed)."""
    _, weights = attend(score, values, keep)
    w = weights.unsqueeze(-1)  # (..., S, 1)
    g = grad.unsqueeze(-2)  # (..., 1, H)
    dw = (values * g).sum(-1, keepdim=True)  # (..., S, 1)
    return w * (dw - (w * dw).sum(-2, keepdim=True)), w * g


def steps(batch: int, count: int, like: torch.Tensor) -> torch.Tensor:
    """(batch, time, 1): the step index t = 0, 1, ... in the dtype of `like` (what `every` reads). Whole
    numbers are exact in it up to 2^24 steps in float32, 2^53 in float64."""
    return torch.arange(count, dtype=like.dtype, device=like.device).view(1, count, 1).expand(batch, count, 1)


def every(t: torch.Tensor, k: float) -> torch.Tensor:
    """`every(k)`: 1 where the step index `t` is a multiple of k, else 0, in t's dtype."""
    return (torch.remainder(t, k) == 0).to(t.dtype)


def layer_norm_backward(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The gradient of `layer_norm(x)` for the output gradient `grad`: torch's own backward kernel (what
    autograd runs), its mean and 1/std recomputed from `x` by the forward kernel. Two calls, where autograd
    on the one function (`vjp`) records a graph and runs the engine each step."""
    x = x.contiguous()  # a column slice of a group's matmul: copied once, not by each kernel
    shape = x.shape[-1:]
    _, mean, rstd = torch.ops.aten.native_layer_norm(x, shape, None, None, 1e-5)
    return torch.ops.aten.native_layer_norm_backward(grad, x, shape, mean, rstd, None, None, [True, False, False])[0]


def cat(*xs: torch.Tensor) -> torch.Tensor:
    """Join vectors along the last axis, broadcasting the leading axes (a static value meets a sequence)."""
    lead = xs[0].shape[:-1]
    if all(x.shape[:-1] == lead for x in xs):
        return torch.cat(xs, -1)
    lead = torch.broadcast_shapes(*(x.shape[:-1] for x in xs))
    return torch.cat([x.expand(*lead, x.shape[-1]) for x in xs], -1)


def last(seq: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence's value at its own last step."""
    if lengths is None:
        return seq[:, -1]
    index = (lengths - 1).view(-1, 1, *([1] * (seq.dim() - 2))).expand(-1, 1, *seq.shape[2:])
    return seq.gather(1, index).squeeze(1)


def last_k(hist: torch.Tensor, seq: torch.Tensor, lengths: torch.Tensor | None, k: int) -> torch.Tensor:
    """The last k values of each sequence, oldest first, where `hist` holds the k values before step 0."""
    steps = seq.shape[1]
    if lengths is None:
        return seq[:, steps - k :] if steps >= k else torch.cat([hist[:, steps:], seq], 1)
    # step L-k+j of a sequence of length L; a negative step reads the history (no sync on lengths)
    index = lengths.view(-1, 1) - k + torch.arange(k, device=seq.device).view(1, -1)
    shape = (*index.shape, *seq.shape[2:])
    trail = [1] * (seq.dim() - 2)
    from_seq = seq.gather(1, index.clamp(min=0).view(*index.shape, *trail).expand(shape))
    from_hist = hist.gather(1, (index + k).clamp(max=k - 1).view(*index.shape, *trail).expand(shape))
    return torch.where((index >= 0).view(*index.shape, *trail), from_seq, from_hist)


def keeping() -> bool:
    """Whether a call may keep tensors for the next ones, or take those kept: not while a tracer looks
    (torch.compile, torch.export, jit.trace see fresh tensors), nor under `inference_mode` (its tensors have
    no version counter and cannot be written outside it), nor inside a torch.func transform."""
    return untraced() and not torch.is_inference_mode_enabled()


def untraced() -> bool:
    """Not inside torch.compile, torch.export, jit.trace, nor a torch.func transform."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
        return False
    return _transform() is None


def transformed() -> bool:
    """Inside a torch.func transform (`grad`, `vmap`, `jacrev`...)."""
    return _transform() is not None


_transform = getattr(torch._C._functorch, "peek_interpreter_stack", lambda: None)


def keepable(t: torch.Tensor) -> bool:
    """Whether a tensor made for keeping is a plain one (not a fake tensor of a dispatch mode, a subclass)."""
    return type(t) is torch.Tensor


def zeros(size: int, like: torch.Tensor) -> torch.Tensor:
    """A zero vector of `like`'s dtype and device (a bias a layer does not have, a fused cell's hidden-side
    bias), kept between calls while nothing writes into it (`keeping`)."""
    if not keeping():
        return like.new_zeros(size)
    key = (size, like.dtype, like.device)
    kept = _ZEROS.get(key)
    if kept is None or kept._version:  # its version counter: 0 until something writes into it
        kept = like.new_zeros(size)
        if keepable(kept):
            _ZEROS[key] = kept
    return kept


_ZEROS: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


class Flat:
    """Weights a loop joins, in one buffer laid out as its code takes them (`plan.Joins`): a fused cell's (w_ih,
    w_hh, b_ih, b_hh) one after another (what `nn.RNNBase.flatten_parameters` makes for cuDNN), or a group's
    joined weights. `views` the tensors, `ptrs` where each parameter starts in it (the parameters are views of
    it), `rows` (which tensor, first row, end row) of each.
    """

    __slots__ = ("ptrs", "rows", "views")

    def __init__(self, views: tuple[torch.Tensor, ...], rows: tuple[tuple[int, int, int], ...]) -> None:
        self.views = views
        self.rows = rows
        self.ptrs = [views[j][lo].data_ptr() for j, lo, _ in rows]


def flat(record: Flat | None, params: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
    """A fused cell's four weight tensors, or a group's joined ones, without a copy: the views of its buffer, where
    every parameter is still the view of it that the module made (a parameter replaced, moved or swapped in by
    `functional_call` is not); else None, and the generated code joins the parameters with `torch.cat`.

    While autograd records, the views go through `_Flat`, whose backward hands each parameter its rows of the
    gradient, on CUDA (cuDNN takes such a buffer as it is, and repacks separate weights at every call). On a
    CPU the `cat`s are the faster there (their copy costs less than a Python autograd node at small sizes).
    Frozen weights while autograd records are joined too: a kernel saving the buffer's views would not see a
    write into a parameter before backward (each parameter has a version counter of its own)."""
    if record is None or not untraced():
        return None
    recording = torch.is_grad_enabled()
    if recording and not (record.views[0].is_cuda or _FLAT_AUTOGRAD):
        return None  # a CPU call while autograd records: the `cat`s, without checking anything first
    if list(map(_data_ptr, params)) != record.ptrs or not all(map(_contiguous, params)):
        return None  # not where the views are, or there but strided otherwise (`p.data = p.data.t()`)
    if not recording:
        return record.views
    return _Flat.apply(record, *params) if any(p.requires_grad for p in params) else None


_data_ptr = torch.Tensor.data_ptr
_contiguous = torch.Tensor.is_contiguous

_FLAT_AUTOGRAD = False  # tests set it: the autograd path of `flat` on a CPU


class _Flat(torch.autograd.Function):
    """A cell's four weight tensors, views of the buffer its parameters are views of, as one autograd node."""

    @staticmethod
    def forward(ctx: Any, record: Flat, *params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.rows = record.rows
        ctx.save_for_backward(*params)  # so a parameter written into before backward is an error, as with torch.nn
        return tuple(v.view_as(v) for v in record.views)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> Any:  # slices: differentiable again (double backward)
        ctx.saved_tensors  # noqa: B018 (unpacking checks their versions)
        out = [
            g[lo:hi] if need and (g := grads[j]) is not None else None
            for (j, lo, hi), need in zip(ctx.rows, ctx.needs_input_grad[1:], strict=True)
        ]
        return (None, *out)


def masked(seq: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Zero the steps past each sequence's end."""
    return seq if valid is None else seq.masked_fill(~valid, 0)


def drop_mask(batch: int, size: int, p: float, like: torch.Tensor) -> torch.Tensor:
    """One dropout mask per sequence, the same at every step (scaled by 1/(1-p))."""
    keep = torch.full((batch, size), 1 - p, dtype=like.dtype, device=like.device)
    return torch.bernoulli(keep) / (1 - p)


# A cell whose parameters are not laid out in one buffer (`flat`: one reading several outside sources, parameters
# replaced or swapped in) has its weights joined at every call, and cuDNN packs them again, as it warns.
warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")

_FUSED: dict[str, Any] = {"lstm": torch.lstm, "gru": torch.gru, "rnn_tanh": torch.rnn_tanh, "rnn_relu": torch.rnn_relu}
# One step of each, as nn.LSTMCell and its kin run it: the same maths, without the sequence kernel's set-up
_CELL: dict[str, Any] = {
    "lstm": torch.lstm_cell,
    "gru": torch.gru_cell,
    "rnn_tanh": torch.rnn_tanh_cell,
    "rnn_relu": torch.rnn_relu_cell,
}


def reverse(seq: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence reversed within its own length (the padding stays where it is)."""
    if lengths is None:
        return seq.flip(1)
    steps = torch.arange(seq.shape[1], device=seq.device).unsqueeze(0)
    index = torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps)
    return seq.gather(1, index.view(*index.shape, 1).expand_as(seq))


def fused(
    kind: str,
    x: torch.Tensor,
    hx: tuple[torch.Tensor, ...],
    params: list[torch.Tensor],
    lengths: torch.Tensor | None,
    backward: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run one standard cell on torch's fused kernel: (every step's h, final h, final c or None), the finals
    (1, B, H) as the kernel gives them (`.transpose(0, 1)` is (B, 1, H), a state's layout, with no copy).

    `x` (B, T, I); `hx` the initial (h,) or (h, c), each (1, B, H); `params` (w_ih, w_hh, b_ih, b_hh).
    With lengths, sequences are packed so the final state is each sequence's own; going backward,
    each sequence is reversed within its length first.
    """
    if transformed() and not torch.compiler.is_compiling():  # torch.func (vmap, grad; not torch.compile's own use
        # of functorch): the sequence kernels have no batching rule
        return _cell_steps(kind, x, hx, params, lengths, backward)
    if _compiled_lstm_backward(kind, x, hx, params):
        # made here, where dynamo is loaded already (`torch.compiler.disable` imports it); torch 2.7 takes no reason
        why = {"reason": _EAGER_WHY} if "reason" in inspect.signature(torch.compiler.disable).parameters else {}
        return torch.compiler.disable(_eager, **why)(kind, x, hx, params, lengths, backward)
    return _eager(kind, x, hx, params, lengths, backward)


def _eager(
    kind: str,
    x: torch.Tensor,
    hx: tuple[torch.Tensor, ...],
    params: list[torch.Tensor],
    lengths: torch.Tensor | None,
    backward: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`fused` without the torch.compile check: one step on the cell function where that pays, else the sequence
    kernel."""
    if lengths is None and _one_cell_pays(kind, x, hx[0]):
        return _cell_step(kind, x, hx, params)
    fn = _FUSED[kind]
    if backward:
        x = reverse(x, lengths)
    states = tuple([h.contiguous() for h in hx])
    train = torch.is_grad_enabled()  # cuDNN keeps what backward needs only in training mode
    if lengths is None or x.shape[0] == 0:
        out, *final = fn(x, states if kind == "lstm" else states[0], params, True, 1, 0.0, train, False, True)
    else:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        order, undo = packed.sorted_indices, packed.unsorted_indices
        assert order is not None and undo is not None  # always set when enforce_sorted=False
        states = tuple(h.index_select(1, order) for h in states)
        data, *final = fn(
            packed.data, packed.batch_sizes, states if kind == "lstm" else states[0], params, True, 1, 0.0, train, False
        )
        out = pad_packed_sequence(
            PackedSequence(data, packed.batch_sizes, order, undo), batch_first=True, total_length=x.shape[1]
        )[0]
        final = [f.index_select(1, undo) for f in final]
    if backward:
        out = reverse(out, lengths)
    return out, final[0], final[1] if len(final) > 1 else None


def _one_cell_pays(kind: str, x: torch.Tensor, h: torch.Tensor) -> bool:
    """Whether a call of one step runs faster on torch's cell function than on the sequence kernel: on a CPU, not
    traced by jit.trace (whose trace of the sequence kernel runs at any length).

    oneDNN's sequence kernels set up per call what one step does not pay back. Measured over one step (this
    project's 2-core machine, 1 and 2 threads, 1-256 x 1 x 64 -> 32-512): while autograd records, forward+backward
    on the cell functions took 0.16-0.94x of the sequence kernels' time for the LSTM, 0.75-1.00x for the GRU and
    0.64-0.98x for Elman (one outlier 1.12, the GRU at 256 x 128 on 1 thread, 0.94 on 2); without autograd the GRU
    and Elman 0.63-1.03x, the LSTM 0.36-0.75x where batch x hidden <= 2048 and up to 1.45x above it, where oneDNN
    fuses its elementwise work and the cell function does not. Not measured on CUDA (cuDNN), which keeps the
    sequence kernel. (torch.export's non-strict trace runs the `scan` variant, which has no fused cells.)"""
    if type(x.shape[1]) is not int or x.shape[1] != 1 or not x.is_cpu or torch.jit.is_tracing():
        return False
    return kind != "lstm" or torch.is_grad_enabled() or x.shape[0] * h.shape[-1] <= 2048


def _compiled_lstm_backward(
    kind: str, x: torch.Tensor, hx: tuple[torch.Tensor, ...], params: list[torch.Tensor]
) -> bool:
    """Whether torch.compile traces an LSTM that oneDNN would run and autograd differentiate. AOT autograd cannot
    compile the backward of oneDNN's LSTM in torch 2.13 (inductor: "expected Tensor() for op:
    torch.ops.aten.mkldnn_rnn_layer"; aot_eager: "expected all tensors_saved_with_vc_check to be Tensors", its
    workspace missing: pytorch/pytorch#158007), so that call runs eagerly, a graph break (`_eager`); the rest
    of the network compiles. Unrolling it into `torch.lstm_cell` steps instead, as dynamo unrolls the generated
    loops, measured far slower (aot_eager, 3 x T x 4 -> 5, first call and backward, then the next: 3.7 s and
    6.3 ms at T = 3, 59 s and 102 ms at T = 200, a graph per length, against 4.2 s and 3.2 ms, 4.7 s and 8.3 ms
    eagerly; inductor 7.2 s and 7.7 ms at T = 200). fullgraph=True cannot hold it. torch.export (strict) is not
    training: it keeps the kernel in its graph."""
    return (
        kind == "lstm"
        and x.is_cpu
        and x.dtype != torch.float64
        and torch.is_grad_enabled()
        and torch.compiler.is_compiling()
        and not torch.compiler.is_exporting()
        and (x.requires_grad or any(t.requires_grad for t in (*hx, *params)))  # frozen: AOT compiles it
    )


_EAGER_WHY = "AOT autograd cannot compile oneDNN's LSTM backward (torch 2.13, pytorch/pytorch#158007)"


def _cell_step(
    kind: str, x: torch.Tensor, hx: tuple[torch.Tensor, ...], params: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`fused` over one step without lengths (either way in time: one step reversed is itself) on torch's cell
    function (`torch.lstm_cell`, ..., what nn.LSTMCell runs): the same maths as the sequence kernel."""
    step = x.select(1, 0)
    if kind == "lstm":
        h, c = _CELL[kind](step, (hx[0].select(0, 0), hx[1].select(0, 0)), *params)
        return h.unsqueeze(1), h.unsqueeze(0), c.unsqueeze(0)
    h = _CELL[kind](step, hx[0].select(0, 0), *params)
    return h.unsqueeze(1), h.unsqueeze(0), None


def _cell_steps(
    kind: str,
    x: torch.Tensor,
    hx: tuple[torch.Tensor, ...],
    params: list[torch.Tensor],
    lengths: torch.Tensor | None,
    backward: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`fused` step by step on the cell's maths in tensor ops, which a torch.func transform batches and
    differentiates (torch's kernels and cell functions have no batching rule): past a sequence's length its state
    stays and its output is 0, as the packed kernel gives them."""
    if backward:
        x = reverse(x, lengths)
    h, c = hx[0].select(0, 0), (hx[1].select(0, 0) if kind == "lstm" else None)
    w_ih, w_hh, b_ih, b_hh = params
    outs = []
    for t in range(x.shape[1]):
        gi, gh = F.linear(x[:, t], w_ih, b_ih), F.linear(h, w_hh, b_hh)
        new_c = None
        if c is not None:  # gates (i, f, g, o), as torch's LSTM lays them out
            i, f, g, o = (gi + gh).chunk(4, 1)
            new_c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            new_h = torch.sigmoid(o) * torch.tanh(new_c)
        elif kind == "gru":  # (r, z, n); n reads r times h's part
            (ri, zi, ni), (rh, zh, nh) = gi.chunk(3, 1), gh.chunk(3, 1)
            r, z = torch.sigmoid(ri + rh), torch.sigmoid(zi + zh)
            new_h = (1 - z) * torch.tanh(ni + r * nh) + z * h
        else:
            new_h = torch.tanh(gi + gh) if kind == "rnn_tanh" else torch.relu(gi + gh)
        if lengths is None:
            outs.append(new_h)
        else:
            live = (lengths > t).unsqueeze(1)
            new_h = torch.where(live, new_h, h)
            new_c = None if c is None or new_c is None else torch.where(live, new_c, c)
            outs.append(torch.where(live, new_h, 0.0))
        h, c = new_h, new_c
    out = torch.stack(outs, 1)
    if backward:
        out = reverse(out, lengths)
    return out, h.unsqueeze(0), None if c is None else c.unsqueeze(0)


def scan(step: Any, init: Any, xs: Any, dim: int, reverse: bool) -> Any:
    """torch's `scan` (`torch._higher_order_ops.scan`): what the code traced by `torch.export` runs a loop
    with, so the exported program keeps its length dynamic (a Python loop is unrolled at the example's)."""
    from torch._higher_order_ops.scan import scan as torch_scan

    # Each start value a tensor of its own, laid out as a step's results are: scan wants a step's carry in the
    # layout of its start (an init expanded over the batch is not), and torch 2.13's export mixes up a start
    # that is also read inside the step (a ring starting from the init that a backward loop reads past each
    # end): it read the carry as the init at every step.
    init = tuple(x.clone(memory_format=torch.contiguous_format) for x in init)
    return torch_scan(step, init, xs, dim=dim, reverse=reverse)


def sequence(x: torch.Tensor, steps: int) -> torch.Tensor:
    """A (B, 1, S) static value as a (B, T, S) sequence."""
    return x.expand(-1, steps, -1)


# ---- loops with a generated backward (`loop_backward`) --------------------------------------------


class _Loop(torch.autograd.Function):
    """One time loop as one autograd node: `forward_fn` and `backward_fn` are generated for it."""

    @staticmethod
    def forward(
        ctx: Any,
        forward_fn: Any,
        backward_fn: Any,
        steps: int,
        batch: int,
        train: bool,
        records: bool,
        *inputs: torch.Tensor | None,
    ) -> Any:
        ctx.backward_fn = backward_fn
        ctx.records = records  # whether a backward may follow (a native forward keeps every step then)
        return forward_fn(ctx, steps, batch, train, *inputs)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        once()
        return (None, None, None, None, None, None, *ctx.backward_fn(ctx, *grads))


def once() -> None:
    """In a backward that is differentiable once (a loop's generated one, the linear scan's C): refuse to run
    where autograd records it (`create_graph=True`, a second derivative wanted). `once_differentiable` does not
    do: its error node has no inputs, so autograd never runs it, and a second derivative through the loop
    came back silently without the loop's part."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "a second derivative through a loop's generated backward (autograd.grad or backward with "
            "create_graph=True): it is differentiable once. Set `net.generated_backward = False` before the "
            "forward call for autograd through torch's ops, which differentiates twice"
        )


def loop(forward_fn: Any, backward_fn: Any, steps: int, batch: int, train: bool, *inputs: torch.Tensor | None) -> Any:
    """Run a generated loop as one autograd node (its outputs, a tuple); where no backward can follow (autograd
    does not record, or no input needs a gradient), its forward alone, without the node's cost (a Python
    autograd node costs tens of microseconds a call: much of a short call)."""
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in inputs):
        return _Loop.apply(forward_fn, backward_fn, steps, batch, train, True, *inputs)
    if not untraced():  # a tracer sees the node, as it would with a backward
        return _Loop.apply(forward_fn, backward_fn, steps, batch, train, False, *inputs)
    return forward_fn(_NoBackward(), steps, batch, train, *inputs)


class _NoBackward:
    """What a loop's forward writes into its autograd context, where no backward follows."""

    records = False

    def save_for_backward(self, *tensors: torch.Tensor | None) -> None:
        pass

    def mark_non_differentiable(self, *tensors: torch.Tensor) -> None:
        pass


# ---- native steps (`native_step`): a loop's elementwise work in generated C --------------------------


def step_ready(source: str, like: torch.Tensor) -> bool:
    """Whether a loop's native steps run for this call: a CPU tensor of float32 or float64 with some values (an
    empty batch leaves the C nothing to do, and no row to read a param from), no tracer looking, and the library
    built (once per source, then cached)."""
    if like.device.type != "cpu" or like.dtype not in _STEP_TYPES or like.numel() == 0:
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return native.step_library(source, _STEP_TYPES[like.dtype]) is not None


def step_functions(source: str, like: torch.Tensor, backward: bool) -> list[Any]:
    """A loop's native step functions for `like`'s dtype, forward or backward, in step order: each takes
    (step, T, B, threads, pointer table)."""
    return _step_functions(source, _STEP_TYPES[like.dtype], backward)


@functools.cache
def _step_functions(source: str, suffix: str, backward: bool) -> list[Any]:
    lib, step = native.step_library(source, suffix), re.compile(("bw" if backward else "fw") + r"\d+")
    names = [n for n in native.exported(source) if n.endswith("_" + suffix)]
    return [getattr(lib, n) for n in names if step.fullmatch(n.rsplit("_", 2)[-2])]  # _N0_fw1_f32: fw1


def run_whole(
    source: str, like: torch.Tensor, backward: bool, steps: int, batch: int, threads: int, table: int
) -> None:
    """A loop with no matrix product in its step run over all its steps by one C call (`_fwall`, `_bwall`)."""
    _whole_function(source, _STEP_TYPES[like.dtype], backward)(steps, batch, threads, table)


@functools.cache
def _whole_function(source: str, suffix: str, backward: bool) -> Any:
    lib, end = native.step_library(source, suffix), f"_{'bw' if backward else 'fw'}all_{suffix}"
    (name,) = [n for n in native.exported(source) if n.endswith(end)]
    return getattr(lib, name)


# The fewest values a native step call (batch x the loop's units) splits among threads, as torch's grain for an
# elementwise op. Measured (2 threads, split against one thread for the C, in one process): layer-norm LSTM
# 0.94-0.96x at 64 x 100 x 128 -> 32 (20480 values) and 16 x 1000 x 128 -> 128, 0.95-0.97x at 64 x 100 x 512;
# peephole LSTM and IndRNN 0.96-0.99x at 512; calls below the grain unchanged.
STEP_GRAIN = 16384


def step_threads(values: int) -> int:
    """How many threads share the rows of a native step call over `values` values (batch x units a row): torch's
    intra-op thread count (`torch.set_num_threads`), or one where the call is small, or where torch's threads are
    not GNU OpenMP's (`native.shared_openmp`: a second pool's threads would spin against torch's)."""
    threads = torch.get_num_threads()
    return threads if threads > 1 and values >= STEP_GRAIN and native.shared_openmp() else 1


def pointers(*tensors: torch.Tensor | None) -> tuple[Any, int]:
    """A C table of the tensors' data pointers (0 for None), and its address, for a step function; the table
    must be kept alive while it is used."""
    table = (ctypes.c_void_p * len(tensors))(*(0 if t is None else t.data_ptr() for t in tensors))
    return table, ctypes.addressof(table)


_STEP_TYPES = {torch.float32: "f32", torch.float64: "f64"}


class Workspace:
    """The value buffers of one loop's native forward, kept between calls: a training call's buffers are
    (k + T, B, H) per node, and fresh ones cost their first touch (a page fault per 4 KiB page) on every call.

    `empty(slot, shape, like)` hands out a view of a buffer kept for that slot, dtype and shape, where nothing
    else holds the buffer any more (its storage's use count: the backward that read it has run, or the
    graph that kept it is gone); else a new buffer, which it keeps. Up to `SHAPES` shapes a slot (training
    calls and inference calls differ, so do the last batch's). Its buffers are freed with the module, or
    dropped when the module moves (`clear`); none is kept where calls keep nothing (`keeping`).
    """

    SHAPES = 2

    def __init__(self) -> None:
        self._kept: dict[str, list[torch.Tensor]] = {}
        self._lock = threading.Lock()  # replicas of a module called from threads share their generated code

    def empty(self, slot: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        if _ALONE is None or not keeping():
            return like.new_empty(shape)
        with self._lock:
            kept = self._kept.setdefault(slot, [])
            for i, buf in enumerate(kept):
                if buf.shape == shape and buf.dtype == like.dtype and buf.device == like.device and _unshared(buf):
                    kept.insert(0, kept.pop(i))
                    return buf.view(shape)  # a view: while it lives, the buffer counts as held
            buf = like.new_empty(shape)
            if keepable(buf):
                kept.insert(0, buf)
                del kept[self.SHAPES :]
            return buf.view(shape)

    def clear(self) -> None:
        """Drop every kept buffer (the module moved to another device or dtype: they would not be used)."""
        with self._lock:
            self._kept.clear()


def _unshared(buf: torch.Tensor) -> bool:
    """Whether only `buf` itself holds its storage (no view, no saved tensor of a graph)."""
    assert _USE_COUNT is not None and _ALONE is not None  # `empty` keeps nothing otherwise
    return bool(_USE_COUNT(buf.untyped_storage()._cdata) <= _ALONE)


def _alone() -> int | None:
    """The use count of a storage that one tensor alone holds, read as `_unshared` reads it (the tensor's own
    reference and that of the Python storage object `untyped_storage()` makes to read it); None where this
    torch cannot tell (no `_storage_Use_Count`, or a view is not counted): then no buffer is kept."""
    if _USE_COUNT is None:
        return None
    t = torch.empty(1)
    alone = _USE_COUNT(t.untyped_storage()._cdata)
    view = t.view(1)
    viewed = _USE_COUNT(t.untyped_storage()._cdata)
    del view
    return int(alone) if viewed > alone else None


_USE_COUNT: Any = getattr(torch._C, "_storage_Use_Count", None)
_ALONE = _alone()


def vjp(fn: Any, grad: torch.Tensor, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The gradients of `fn(*xs)` for the output gradient `grad`, by autograd on the one function: the
    generated backward's way to differentiate the functions it has no formula for (gelu, softmax...)."""
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_() for x in xs]
        return torch.autograd.grad(fn(*leaves), leaves, grad)


def sum_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`grad` summed down to the shape of `like`, which was broadcast to it (a bias (H,) over (B, H))."""
    return grad.sum(0) if grad.dim() > like.dim() else grad


# ---- loops linear in their own past (`backend.linear`) ----------------------------------------------


def linear_scan(
    a: torch.Tensor | float,
    b: torch.Tensor | float,
    start: torch.Tensor,
    keep: torch.Tensor | None,
    reverse: bool,
    steps: int,
) -> torch.Tensor:
    """Every step of `h = a * h[t-1] + b` (`h[t+1]` with `reverse`), (B, T, H), as one autograd node.

    `a` and `b` are numbers or tensors broadcasting to (B, T, H); `start` (B, H) is what the first step reads.
    With `keep` ((B, T, 1) bool, a backward loop with lengths), a step past a sequence's end passes `start`
    on instead of its value, as the generated loop's ring does: folded into `a` and `b` here, so the scan
    itself is never masked (`where` keeps each branch's numbers exact).
    """
    shape = (start.shape[0], steps, start.shape[-1])
    a_, b_ = (x.expand(shape) if isinstance(x, torch.Tensor) else start.new_full(shape, x) for x in (a, b))
    if keep is not None:
        kept = torch.cat([keep[:, 1:], torch.ones_like(keep[:, :1])], 1)  # whether step t + 1's value is passed on
        b_ = torch.where(kept, b_, torch.addcmul(b_, a_, start.unsqueeze(1)))
        a_ = torch.where(kept, a_, 0.0)
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or transformed():  # tensor ops, not a C call
        return _traced_scan(a_, b_, start, reverse)
    if steps == 1:  # one step is its one multiply-add: torch's ops, cheaper than a node and its call at this size
        return b_ + a_ * start.unsqueeze(1)
    return _LinearScan.apply(a_, b_, start, reverse)


class _LinearScan(torch.autograd.Function):
    """h_t = a_t h_{t-1} + b_t over time in one call; its backward is the same recurrence run the other way:
    g_t = dL/dh_t + a_{t+1} g_{t+1}, then da_t = g_t h_{t-1}, db_t = g_t, d start = a_first g_first."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, start: torch.Tensor, reverse: bool) -> torch.Tensor:
        a, b, start = a.contiguous(), b.contiguous(), start.contiguous()
        out = _scan(a, b, start, reverse)
        ctx.reverse = reverse
        ctx.save_for_backward(a, start, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        once()
        a, start, out = ctx.saved_tensors
        lib = _native(a)
        if lib is not None:  # one pass: g, da and d start together
            grad, g, da, d_start = grad.contiguous(), torch.empty_like(a), torch.empty_like(a), torch.empty_like(start)
            fn = getattr(lib, f"rnndsl_linear_scan_backward_{_C_TYPES[a.dtype]}")
            fn(*(x.data_ptr() for x in (a, start, out, grad, g, da, d_start)), *a.shape, int(ctx.reverse))
            return da, g, d_start, None
        # in loop order, each step's successor's coefficient (0 after the last) and predecessor's value
        zero, first = a.new_zeros(()).expand_as(a[:, :1]), start.unsqueeze(1)
        if ctx.reverse:
            a_next, h_prev = torch.cat([zero, a[:, :-1]], 1), torch.cat([out[:, 1:], first], 1)
        else:
            a_next, h_prev = torch.cat([a[:, 1:], zero], 1), torch.cat([first, out[:, :-1]], 1)
        g = _scan(a_next, grad.contiguous(), torch.zeros_like(start), not ctx.reverse)
        at_first = -1 if ctx.reverse else 0
        return g * h_prev, g, a[:, at_first] * g[:, at_first], None


def _native(x: torch.Tensor) -> Any:
    """The C kernels' library, where they take `x` (CPU, float32 or float64) and can be built; else None."""
    return native.scan_kernel() if x.device.type == "cpu" and x.dtype in _C_TYPES else None


def _scan(a: torch.Tensor, b: torch.Tensor, start: torch.Tensor, reverse: bool) -> torch.Tensor:
    """The recurrence over contiguous (B, T, H) tensors: the C kernel on a CPU, else a multiply and an add a step."""
    out = torch.empty_like(b)
    lib = _native(a)
    if lib is not None:
        fn = getattr(lib, f"rnndsl_linear_scan_{_C_TYPES[a.dtype]}")
        fn(*(x.data_ptr() for x in (a, b, start, out)), *b.shape, int(reverse))
        return out
    h = start
    for t in range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1]):
        h = torch.mul(a[:, t], h, out=out[:, t]).add_(b[:, t])  # two roundings, as the C kernel and the loop
    return out


_C_TYPES = {torch.float32: "float", torch.float64: "double"}


def _traced_scan(a: torch.Tensor, b: torch.Tensor, start: torch.Tensor, reverse: bool) -> torch.Tensor:
    h, steps = start, []
    for t in range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        steps.append(h)
    return torch.stack(steps[::-1] if reverse else steps, 1)
