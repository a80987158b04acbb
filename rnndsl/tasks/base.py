"""What every task shares: takes a task's needs and a checked network, gives a `Binding` or `TaskMismatchError`.

A task owns its data (train/validation/test splits from a seed), its loss and its metrics. The training
loop only sees `Batch`es, calls `Binding.inputs` to feed the network and reads one output back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from rnndsl.lang import syntax as s
from rnndsl.lang.errors import Diagnostic, Span
from rnndsl.lang.ir import Network, Node, OutputSpec

__all__ = [
    "IGNORE",
    "Batch",
    "Binding",
    "Needs",
    "SplitTask",
    "Task",
    "TaskMismatchError",
    "bind",
    "epoch_batch",
    "rng",
]

IGNORE = -100  # target of a padded position; F.cross_entropy's default ignore_index


@dataclass(frozen=True)
class Batch:
    """Inputs `x` (B, T, S) float or (B, T) int64 token ids, targets `y`, and `lengths` (B,) when padded;
    `more` holds what some tasks feed besides (by role: "static" (B, S) conditioning vectors, "decoder_in"
    (B, T') a decoder's teacher-forced tokens with "decoder_lengths" (B,))."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None = None
    more: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def slice(self, start: int, stop: int) -> Batch:
        """Sequences start..stop-1, still padded to the whole batch's length (so outputs concatenate)."""
        lengths = None if self.lengths is None else self.lengths[start:stop]
        return Batch(self.x[start:stop], self.y[start:stop], lengths, {k: v[start:stop] for k, v in self.more.items()})


@dataclass(frozen=True)
class Needs:
    """The network shape a task feeds and reads back.

    `vocab` > 0: the task gives token ids in [0, vocab), which a `tokens(vocab)` input takes as ids and a
    sequence input of size `vocab` takes as one-hot vectors. Otherwise it gives vectors of `input_size`.
    `logits`: the output is read as unnormalised scores (a `softmax` output is refused).
    """

    input_size: int
    output_size: int
    last: bool
    vocab: int = 0
    logits: bool = True

    def feeds(self) -> str:
        if self.vocab:
            return (
                f"token ids in [0, {self.vocab}) (`input NAME: tokens({self.vocab})`, or `input NAME: "
                f"{self.vocab}` read one-hot)"
            )
        return f"vectors of size {self.input_size} at every step (`input NAME: {self.input_size}`)"

    def reads(self) -> str:
        shape = (
            f"`output NAME last` of size {self.output_size}"
            if self.last
            else f"`output NAME` (every step) of size {self.output_size}"
        )
        return shape + (" as logits (no activation, or log_softmax)" if self.logits else "")

    def describe(self) -> str:
        """`feeds ... and reads ...`, for messages."""
        return f"feeds {self.feeds()} and reads {self.reads()}"


@dataclass(frozen=True)
class Binding:
    """Which network input the task feeds and which output it reads; `one_hot` is the vocabulary size when
    token ids go to a sequence input as one-hot vectors (0 otherwise); `static` the input that takes the
    batch's "static" vectors, if the task gives them."""

    input: str
    output: str
    one_hot: int = 0
    static: str = ""

    def run(self, net: Any, batch: Batch) -> torch.Tensor:
        """The network's output on a batch (on the network's device and dtype)."""
        like = net.like
        lengths = None if batch.lengths is None else batch.lengths.to(like.device)
        return net(**self.inputs(batch, like), lengths=lengths)[self.output]

    def inputs(self, batch: Batch, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The keyword arguments for the network: the batch's inputs on `like`'s device and dtype."""
        x = batch.x.to(like.device)
        if self.one_hot:
            x = F.one_hot(x.clamp(min=0), self.one_hot).to(like.dtype)
        elif x.is_floating_point():
            x = x.to(like.dtype)
        out = {self.input: x}
        if self.static:
            out[self.static] = batch.more["static"].to(like.device, like.dtype)
        return out


class TaskMismatchError(ValueError):
    """A network whose inputs or outputs do not have the shape a task feeds and reads."""

    def __init__(self, header: str, diagnostics: list[Diagnostic]) -> None:
        self.header = header
        self.diagnostics = diagnostics
        super().__init__("\n".join([header, *(d.format() for d in diagnostics)]))


def bind(network: Network, task: str, needs: Needs) -> Binding:
    """Match a network to a task's needs, or raise `TaskMismatchError` naming each difference and its fix.

    >>> import rnndsl
    >>> net = rnndsl.load("network R { input x: 8\\n layer y: 10 <- x, y[t-1]\\n output y last }")
    >>> bind(net, "digits", Needs(input_size=8, output_size=10, last=True))
    Binding(input='x', output='y', one_hot=0, static='')
    """
    problems: list[tuple[str, Span, str]] = []
    one_hot = _check_inputs(network, needs, problems)
    output = _pick_output(network, needs, problems)
    if problems:
        header = (
            f"network `{network.name}` ({network.source.name}) does not fit task `{task}`, which {needs.describe()}"
        )
        raise TaskMismatchError(header, [Diagnostic(m, span, network.source, hint=h) for m, span, h in problems])
    return Binding(network.inputs[0].name, output, one_hot)


def _check_inputs(network: Network, needs: Needs, problems: list[tuple[str, Span, str]]) -> int:
    inputs = network.inputs
    if len(inputs) != 1:
        names = ", ".join(f"`{n.name}`" for n in inputs)
        span = inputs[1].span if len(inputs) > 1 else Span(1, 1)
        problems.append(
            (f"the task feeds one input; the network has {len(inputs)} ({names or 'none'})", span, "keep one input")
        )
        return 0
    node = inputs[0]
    if node.input_kind == "static":
        problems.append((f"input `{node.name}` is static; the task gives a sequence", node.span, "drop `static`"))
        return 0
    if needs.vocab:
        if node.is_tokens or node.size == needs.vocab:
            if node.size != needs.vocab:
                problems.append(
                    (
                        f"input `{node.name}` has {node.size} tokens; the task's alphabet has {needs.vocab}",
                        node.span,
                        f"declare `input {node.name}: tokens({needs.vocab})`",
                    )
                )
            return 0 if node.is_tokens else needs.vocab
        problems.append(
            (
                f"input `{node.name}` has size {node.size}; the task gives token ids of an alphabet of {needs.vocab}",
                node.span,
                f"declare `input {node.name}: tokens({needs.vocab})` or `input {node.name}: {needs.vocab}` (one-hot)",
            )
        )
        return 0
    if node.is_tokens:
        problems.append(
            (
                f"input `{node.name}` is tokens({node.size}); the task gives vectors of size {needs.input_size}",
                node.span,
                f"declare `input {node.name}: {needs.input_size}`",
            )
        )
    elif node.size != needs.input_size:
        problems.append(
            (
                f"input `{node.name}` has size {node.size}; the task gives {needs.input_size} per step",
                node.span,
                f"declare `input {node.name}: {needs.input_size}`",
            )
        )
    return 0


def _pick_output(network: Network, needs: Needs, problems: list[tuple[str, Span, str]]) -> str:
    """The one output that fits; with several outputs, exactly one may fit."""
    found = {o.name: _output_problems(network, o, needs) for o in network.outputs}
    fitting = [name for name, errs in found.items() if not errs]
    if len(fitting) == 1:
        return fitting[0]
    if len(network.outputs) == 1:
        problems.extend(found[network.outputs[0].name])
    elif fitting:
        problems.append(
            (
                f"outputs {', '.join(f'`{n}`' for n in fitting)} all fit the task; it reads one",
                network.by_name[fitting[1]].span,
                "keep one such output",
            )
        )
    else:
        problems.append(
            (
                f"no output fits the task (outputs: {', '.join(f'`{o.name}`' for o in network.outputs)})",
                network.outputs[0].span,
                f"add an {needs.reads()}",
            )
        )
    return ""


def _output_problems(network: Network, out: OutputSpec, needs: Needs) -> list[tuple[str, Span, str]]:
    node = network.by_name[out.name]
    errs = []
    if needs.last and not out.last:
        errs.append(
            (
                f"output `{out.name}` gives a value at every step; the task needs one per sequence",
                out.span,
                f"write `output {out.name} last`",
            )
        )
    elif out.last and not needs.last:
        errs.append(
            (
                f"output `{out.name}` is `last`; the task needs a value at every step",
                out.span,
                f"write `output {out.name}`",
            )
        )
    if node.size != needs.output_size:
        what = "one score per class" if needs.logits else "the predicted value"
        errs.append(
            (
                f"output `{out.name}` has size {node.size}; the task needs {needs.output_size} ({what})",
                node.span,
                f"make `{out.name}` of size {needs.output_size}",
            )
        )
    if needs.logits and _is_softmax(node):
        errs.append(
            (
                f"output `{out.name}` is a softmax; the task reads it as logits (it applies log_softmax itself)",
                node.span,
                "use `log_softmax` or no activation",
            )
        )
    return errs


def _is_softmax(node: Node) -> bool:
    if node.op == "layer":
        return node.activation == "softmax"
    return isinstance(node.expr, s.Call) and node.expr.fn == "softmax"


def rng(*key: int) -> np.random.Generator:
    """A numpy generator fixed by a tuple of integers (seed, purpose, step...): streams never overlap."""
    return np.random.default_rng([int(k) for k in key])


def epoch_batch(n: int, step: int, batch: int, seed: int) -> np.ndarray:
    """Indices of training batch `step` over `n` examples: each epoch is a fresh seeded permutation, cut
    into batches of `batch` (the last partial one dropped). Depends only on its arguments (resumable)."""
    batch = min(batch, n)
    per_epoch = n // batch
    epoch, index = divmod(step, per_epoch)
    order = rng(seed, 1, epoch).permutation(n)
    return order[index * batch : (index + 1) * batch]


def split_indices(n: int, seed: int, fractions: tuple[float, float]) -> dict[str, np.ndarray]:
    """A seeded permutation of range(n) cut into train/validation/test; validation and test take
    `fractions` of n (rounded), train the rest."""
    order = rng(seed, 0).permutation(n)
    n_val, n_test = (round(f * n) for f in fractions)
    return {"test": order[:n_test], "validation": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}


class Task:
    """A task: data, loss and metrics. Subclasses are dataclasses whose fields are the task's options.

    `train_batch(step, size)` depends only on the task's options and `step`, so a resumed run sees the
    same batches as an uninterrupted one. `split(name)` gives the whole "validation" or "test" split.
    `metrics` are keyed by name; `primary` names the one curves and comparisons show (`higher_is_better`).
    """

    name: ClassVar[str]
    primary: ClassVar[str]
    higher_is_better: ClassVar[bool]
    # options that change how a trained network is evaluated but not the data (g2p's `beam`): the ones
    # `rnndsl evaluate --task-arg` may set on a checkpoint's task
    evaluation_options: ClassVar[tuple[str, ...]] = ()
    seed: int

    @property
    def needs(self) -> Needs:
        raise NotImplementedError

    def train_batch(self, step: int, size: int) -> Batch:
        raise NotImplementedError

    def split(self, name: str) -> Batch:
        raise NotImplementedError

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, float]:
        raise NotImplementedError

    @property
    def label(self) -> str:
        """The task's part of a run folder's name (`runs/SPEC-LABEL`): its name."""
        return self.name

    def bind(self, network: Any) -> Binding:
        """Match a network (or model) to the task; raise TaskMismatchError saying what differs."""
        if not isinstance(network, Network):
            raise TaskMismatchError(
                f"task `{self.name}` trains a network, and `{network.name}` is a model",
                [
                    Diagnostic(
                        f"`{network.name}` is a model",
                        network.span,
                        network.source,
                        hint="pick one of its networks with --network NAME",
                    )
                ],
            )
        return bind(network, self.name, self.needs)

    def evaluate(self, net: Any, binding: Binding, batch: Batch, chunk: int) -> dict[str, float]:
        """The task's metrics of the network on `batch` (the network in eval mode, without gradients),
        run in chunks of `chunk` sequences."""
        outs = [binding.run(net, batch.slice(i, i + chunk)) for i in range(0, len(batch), chunk)]
        return self.metrics(torch.cat(outs), batch)

    def show(self, net: Any, words: list[str], count: int, options: dict[str, Any]) -> list[str]:
        """Lines showing what a trained network does (`rnndsl generate`): samples, translations."""
        raise ValueError(f"task `{self.name}` has nothing to generate; generation needs a task such as names or g2p")

    def config(self) -> dict[str, Any]:
        """The task's name and options: enough to build it again (`make_task(**config)`)."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}  # type: ignore[arg-type]


class SplitTask(Task):
    """A task over a fixed set of examples cut into seeded splits (digits, your own arrays): a subclass gives
    `_splits` (split name -> example indices) and `_batch(indices)`; training batches are seeded epochs over
    the train split (`epoch_batch`)."""

    @property
    def _splits(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _batch(self, indices: np.ndarray) -> Batch:
        raise NotImplementedError

    def train_batch(self, step: int, size: int) -> Batch:
        train = self._splits["train"]
        return self._batch(train[epoch_batch(len(train), step, size, self.seed)])

    def split(self, name: str) -> Batch:
        check_split(name)
        return self._batch(self._splits[name])


def check_split(name: str) -> None:
    if name not in ("validation", "test"):
        raise ValueError(f"no split `{name}`; the splits are: validation, test (train comes in batches)")
