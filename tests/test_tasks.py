"""Tasks: documented shapes, deterministic splits, hand-checked metrics, and the network/task fit check."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import rnndsl
from rnndsl.tasks import (
    G2P,
    TASKS,
    Adding,
    Binding,
    Copy,
    Digits,
    Names,
    Needs,
    TaskMismatchError,
    make_task,
    parse_options,
)
from rnndsl.tasks.base import IGNORE, Batch, bind, epoch_batch
from rnndsl.tasks.metrics import accuracy, bits_per_char, cross_entropy, mse, solved_fraction
from rnndsl.tasks.names import decode, load_names, load_names_by_sex

pytest.importorskip("sklearn")
pytest.importorskip("names")


def _same(a: Batch, b: Batch) -> bool:
    lengths = (a.lengths is None and b.lengths is None) or bool(torch.equal(a.lengths, b.lengths))
    return bool(torch.equal(a.x, b.x) and torch.equal(a.y, b.y)) and lengths


# ---- shapes ---------------------------------------------------------------------------------------


def test_digits_shapes_and_split_sizes() -> None:
    task = Digits()
    batch = task.train_batch(0, 16)
    assert batch.x.shape == (16, 8, 8) and batch.x.dtype == torch.float32
    assert batch.y.shape == (16,) and batch.y.dtype == torch.int64 and batch.lengths is None
    assert float(batch.x.min()) >= 0.0 and float(batch.x.max()) <= 1.0
    assert (len(task.split("validation")), len(task.split("test")), len(task._splits["train"])) == (180, 359, 1258)


def test_digits_splits_are_disjoint_and_cover_every_image() -> None:
    splits = Digits(seed=3)._splits
    together = np.concatenate(list(splits.values()))
    assert sorted(together.tolist()) == list(range(1797))


def test_adding_shapes_marks_and_targets() -> None:
    batch = Adding(length=12).train_batch(5, 64)
    assert batch.x.shape == (64, 12, 2) and batch.y.shape == (64,)
    marks = batch.x[..., 1]
    assert torch.all(marks.sum(1) == 2)
    assert torch.all(marks[:, :6].sum(1) == 1) and torch.all(marks[:, 6:].sum(1) == 1)
    assert torch.allclose((batch.x[..., 0] * marks).sum(1), batch.y)
    assert Adding().train_batch(0, 2).x.shape[1] == 100  # the default length


def test_copy_layout() -> None:
    task = Copy(symbols=4, copy=3, delay=5)
    batch = task.train_batch(0, 10)
    x, y = batch.x, batch.y
    assert x.shape == y.shape == (10, 5 + 2 * 3) and x.dtype == torch.int64
    assert torch.all((x[:, :3] >= 1) & (x[:, :3] <= 4))
    assert torch.all(x[:, 3:7] == 0) and torch.all(x[:, 7] == 5) and torch.all(x[:, 8:] == 0)
    assert torch.all(y[:, :8] == 0) and torch.equal(y[:, 8:], x[:, :3])
    assert task.needs == Needs(input_size=6, output_size=6, last=False, vocab=6)
    assert task.baseline == pytest.approx(3 * math.log(4) / 11)


def test_names_inputs_targets_and_lengths() -> None:
    task = Names()
    batch = task.train_batch(0, 8)
    words = [decode(batch.x[i, 1 : int(n)].tolist()) for i, n in enumerate(batch.lengths)]
    assert words == [task.words("train")[i] for i in epoch_batch(len(task.words("train")), 0, 8, 0)]
    for row, (word, n) in enumerate(zip(words, batch.lengths.tolist(), strict=True)):
        assert n == len(word) + 1 and batch.x[row, 0] == 0
        assert decode(batch.y[row, :n].tolist()) == word + "."
        assert torch.all(batch.y[row, n:] == IGNORE)
    assert batch.x.shape == (8, int(batch.lengths.max()))


def test_names_are_the_census_first_names() -> None:
    words = load_names()
    assert len(words) == 5163 and len(set(words)) == len(words)
    assert all(w.isascii() and w.isalpha() and w.islower() for w in words)
    task = Names()
    sizes = [len(task.words(s)) for s in ("train", "validation", "test")]
    assert sizes == [4131, 516, 516]
    assert sorted(w for s in ("train", "validation", "test") for w in task.words(s)) == list(words)


# ---- determinism ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TASKS))
def test_splits_and_batches_are_fixed_by_the_seed(name: str) -> None:
    small = {
        "adding": {"length": 10, "validation_size": 20, "test_size": 20},
        "copy": {"delay": 4, "validation_size": 20, "test_size": 20},
        "g2p": {"validation_size": 20, "test_size": 20},
    }.get(name, {})
    a, b, c = (make_task(name, seed=s, **small) for s in (1, 1, 2))
    for split in ("validation", "test"):
        assert _same(a.split(split), b.split(split))
        assert not _same(a.split(split), c.split(split))
    assert _same(a.train_batch(7, 16), b.train_batch(7, 16))
    assert not _same(a.train_batch(7, 16), a.train_batch(8, 16))
    assert not _same(a.train_batch(7, 16), c.train_batch(7, 16))


def test_epoch_batches_visit_every_example_once_per_epoch() -> None:
    seen = np.concatenate([epoch_batch(10, step, 3, seed=0) for step in range(3)])  # 3 batches per epoch
    assert sorted(seen.tolist()) == sorted(set(seen.tolist())) and len(seen) == 9
    assert not np.array_equal(epoch_batch(10, 0, 3, 0), epoch_batch(10, 3, 3, 0))  # a new order next epoch
    assert len(epoch_batch(4, 0, 10, 0)) == 4  # a batch larger than the data is the whole data


def test_split_names_are_checked() -> None:
    with pytest.raises(ValueError, match="no split `train`; the splits are: validation, test"):
        Digits().split("train")


# ---- metrics --------------------------------------------------------------------------------------


def test_accuracy_skips_ignored_positions() -> None:
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [5.0, 0.0]]])
    assert accuracy(logits, torch.tensor([[0, 0, IGNORE]])) == 0.5
    assert accuracy(logits[0], torch.tensor([0, 1, 0])) == 1.0
    assert math.isnan(accuracy(logits, torch.full((1, 3), IGNORE)))


def test_cross_entropy_and_bits_per_char() -> None:
    uniform = torch.zeros(2, 3, 27)
    target = torch.tensor([[1, 2, IGNORE], [3, IGNORE, IGNORE]])
    assert bits_per_char(uniform, target) == pytest.approx(math.log2(27))
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    assert bits_per_char(logits, torch.tensor([0])) == pytest.approx(1.0)
    assert float(cross_entropy(logits, torch.tensor([1]))) == pytest.approx(math.log(4))
    # a log_softmax output gives the same loss as its logits
    raw = torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 3])
    assert torch.allclose(cross_entropy(raw, y), cross_entropy(torch.log_softmax(raw, -1), y))


def test_mse_and_solved() -> None:
    prediction, target = torch.tensor([1.0, 0.5, 2.0]), torch.tensor([1.0, 0.45, 1.0])
    assert mse(prediction, target) == pytest.approx((0.05**2 + 1.0) / 3)
    assert solved_fraction(prediction, target) == pytest.approx(1 / 3)  # 0.05 is not under 0.04
    assert solved_fraction(torch.tensor([1.03]), torch.tensor([1.0])) == 1.0


def test_task_metrics_on_perfect_outputs() -> None:
    task = Copy(symbols=3, copy=2, delay=3)
    batch = task.train_batch(0, 4)
    perfect = torch.nn.functional.one_hot(batch.y, 5).float() * 20
    metrics = task.metrics(perfect, batch)
    assert metrics["accuracy"] == 1.0 and metrics["cross_entropy"] < 1e-6
    adding = Adding(length=6)
    b = adding.train_batch(0, 5)
    assert adding.metrics(b.y.unsqueeze(-1), b) == {"mse": 0.0, "solved": 1.0}


# ---- fitting a network to a task -------------------------------------------------------------------

DIGITS_OK = "network D { input x: 8\n layer h: 4 tanh <- x, h[t-1]\n layer y: 10 <- h\n output y last }"


def test_bind_accepts_logits_and_log_softmax() -> None:
    assert Digits().bind(rnndsl.load(DIGITS_OK)) == Binding("x", "y")
    log_softmax = DIGITS_OK.replace("layer y: 10 <- h", "layer y: 10 log_softmax <- h")
    assert Digits().bind(rnndsl.load(log_softmax)).output == "y"


def test_bind_tokens_or_one_hot() -> None:
    tokens = "network N { input w: tokens(27)\n layer h: 4 tanh <- w, h[t-1]\n layer y: 27 <- h\n output y }"
    one_hot = tokens.replace("tokens(27)", "27")
    assert Names().bind(rnndsl.load(tokens)) == Binding("w", "y", 0)
    binding = Names().bind(rnndsl.load(one_hot))
    assert binding == Binding("w", "y", 27)
    batch = Names().train_batch(0, 3)
    x = binding.inputs(batch, torch.zeros((), dtype=torch.float64))["w"]
    assert x.shape == (*batch.x.shape, 27) and x.dtype == torch.float64
    assert torch.equal(x.argmax(-1), batch.x) and torch.all(x.sum(-1) == 1)


def test_bind_picks_the_output_that_fits() -> None:
    spec = DIGITS_OK.replace("output y last", "output h\n output y last")
    assert Digits().bind(rnndsl.load(spec)).output == "y"


def test_mismatch_names_each_difference_and_the_fix() -> None:
    spec = "network E { input x: 16\n layer h: 4 tanh <- x, h[t-1]\n layer y: 3 softmax <- h\n output y }"
    with pytest.raises(TaskMismatchError) as info:
        Digits().bind(rnndsl.load(spec))
    text = str(info.value)
    assert text.startswith(
        "network `E` (<string>) does not fit task `digits`, which feeds vectors of size 8 at "
        "every step (`input NAME: 8`) and reads `output NAME last` of size 10 as logits"
    )
    assert "<string>:1:13: error: input `x` has size 16; the task gives 8 per step" in text
    assert "help: declare `input x: 8`" in text
    assert "error: output `y` gives a value at every step; the task needs one per sequence" in text
    assert "help: write `output y last`" in text
    assert "error: output `y` has size 3; the task needs 10 (one score per class)" in text
    assert "error: output `y` is a softmax; the task reads it as logits" in text
    assert "help: use `log_softmax` or no activation" in text


def test_mismatch_inputs_of_other_kinds() -> None:
    two = "network T { input x: 8\n input s: 3 static\n layer y: 10 <- x, s, y[t-1]\n output y last }"
    with pytest.raises(TaskMismatchError, match=r"the task feeds one input; the network has 2 \(`x`, `s`\)"):
        Digits().bind(rnndsl.load(two))
    tokens = "network K { input w: tokens(8)\n layer y: 10 <- w, y[t-1]\n output y last }"
    with pytest.raises(TaskMismatchError, match=r"input `w` is tokens\(8\); the task gives vectors of size 8"):
        Digits().bind(rnndsl.load(tokens))
    few = "network F { input w: tokens(20)\n layer y: 27 <- w, y[t-1]\n output y }"
    with pytest.raises(TaskMismatchError, match=r"input `w` has 20 tokens; the task's alphabet has 27"):
        Names().bind(rnndsl.load(few))
    vectors = "network V { input w: 5\n layer y: 27 <- w, y[t-1]\n output y }"
    with pytest.raises(TaskMismatchError, match=r"declare `input w: tokens\(27\)` or `input w: 27` \(one-hot\)"):
        Names().bind(rnndsl.load(vectors))


def test_mismatch_with_several_outputs() -> None:
    spec = "network M { input x: 2\n layer h: 4 tanh <- x, h[t-1]\n layer y: 3 <- h\n output h\n output y }"
    with pytest.raises(TaskMismatchError, match=r"no output fits the task \(outputs: `h`, `y`\)"):
        Adding().bind(rnndsl.load(spec))
    both = "network B { input x: 2\n layer a: 1 <- x, a[t-1]\n layer b: 1 <- a\n output a last\n output b last }"
    with pytest.raises(TaskMismatchError, match=r"outputs `a`, `b` all fit the task; it reads one"):
        bind(rnndsl.load(both), "adding", Adding().needs)


# ---- the registry ----------------------------------------------------------------------------------


def test_registry_and_options() -> None:
    assert list(TASKS) == ["digits", "adding", "copy", "names", "g2p"]
    assert make_task("adding", length=30).config() == {
        "name": "adding",
        "length": 30,
        "seed": 0,
        "validation_size": 1000,
        "test_size": 1000,
    }
    assert isinstance(make_task("copy"), Copy)
    with pytest.raises(ValueError, match="no task `add`; the tasks are: digits, adding, copy, names, g2p"):
        make_task("add")
    with pytest.raises(ValueError, match="task `digits` has no option `length`; its options are: seed"):
        make_task("digits", length=3)
    assert parse_options("adding", ["length=50", "seed=2"]) == {"length": 50, "seed": 2}
    with pytest.raises(ValueError, match="task option `length` takes an integer, got `x`"):
        parse_options("adding", ["length=x"])
    with pytest.raises(ValueError, match="write KEY=VALUE with KEY one of length, seed"):
        parse_options("adding", ["length"])
    with pytest.raises(ValueError, match="the adding problem needs length >= 2"):
        Adding(length=1)


# ---- generation tasks: names by sex, spelling to pronunciation -------------------------------------

ROOT = Path(__file__).resolve().parent.parent
NAME_GEN = ROOT / "examples" / "tasks" / "names_gen.rnn"
G2P_SPEC = ROOT / "examples" / "tasks" / "g2p_gru.rnn"


def test_names_by_sex_feeds_a_static_input_and_generates_names() -> None:
    task = Names(by_sex=1)
    batch = task.train_batch(0, 8)
    sex = dict(load_names_by_sex())
    names = [
        decode([int(i) for i in row[1:n]]) for row, n in zip(batch.x.tolist(), batch.lengths.tolist(), strict=True)
    ]
    assert batch.more["static"].tolist() == [[1 - sex[n], sex[n]] for n in names]
    torch.manual_seed(0)
    net = rnndsl.compile(NAME_GEN)
    binding = task.bind(net.network)
    assert binding == Binding("w", "y", 0, "sex")
    assert binding.run(net, batch).shape == (8, batch.x.shape[1], 27)
    lines = task.show(net, ["ma"], 3, {"generator": torch.Generator().manual_seed(0)})
    assert [line.split(":")[0] for line in lines] == ["male", "female"]
    for line in lines:
        generated = line.split(": ")[1].split(", ")
        assert len(generated) == 3 and all(
            g.startswith("ma") and set(g) <= set("abcdefghijklmnopqrstuvwxyz") for g in generated
        )
    for word in ("ü", "a b", "x1"):  # refused before encoding (which raised "substring not found")
        with pytest.raises(ValueError, match=f"prompt `{word}`: names are letters a-z"):
            task.show(net, [word], 1, {})
    with pytest.raises(TaskMismatchError, match="needs one `static` input of size 2"):
        task.bind(rnndsl.load(ROOT / "examples" / "tasks" / "names_lstm.rnn"))


def test_g2p_batches_bind_a_model_and_decode() -> None:
    task = G2P(validation_size=6, test_size=6)
    batch = task.split("validation")
    pairs = task.words("validation")
    assert batch.x.shape[0] == 6 and batch.lengths.tolist() == [len(w) for w, _ in pairs]
    assert batch.more["decoder_lengths"].tolist() == [len(p) + 1 for _, p in pairs]
    assert bool((batch.more["decoder_in"][:, 0] == 0).all())
    torch.manual_seed(0)
    model = rnndsl.compile(G2P_SPEC)
    binding = task.bind(model.model)
    assert (binding.input, binding.target, binding.output, binding.encoder, binding.decoder) == (
        "letters",
        "phone",
        "y",
        "enc",
        "dec",
    )
    model.eval()
    with torch.no_grad():
        metrics = task.evaluate(model, binding, batch, 4)
    assert set(metrics) == {"per", "wer", "per_any", "wer_any", "cross_entropy"} and metrics["wer"] == 1.0  # untrained
    assert metrics["wer_any"] <= metrics["wer"] and metrics["per_any"] <= metrics["per"]
    lines = task.show(model, ["cat"], 1, {})
    assert lines[0].startswith("cat ")
    with pytest.raises(TaskMismatchError, match="an encoder-decoder is a `model`"):
        task.bind(rnndsl.load(G2P_SPEC, "Speller"))
    with pytest.raises(TaskMismatchError, match="is a model"):
        Names().bind(model.model)
