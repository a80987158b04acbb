"""Attention over a memory: `input enc: N memory`, values over its positions, `c = attend(score, values)`.

The generated forward and its generated backward against the reference executor (which cuts each memory
to its length, so the generated code's masking is checked against no masking at all), in a loop (additive
attention on h[t-1]) and in a batched stage (Luong's on the current h), with and without lengths on
either axis; the weights; bad inputs; a model binding an encoder's every step; generation and beam search.
"""

from __future__ import annotations

import pytest
import torch

import rnndsl
from rnndsl.runtime.reference import reference

ADDITIVE = """network Dec {
    input  enc: 6 memory
    input  x: 3
    layer  k: 5 bias=false <- enc
    layer  q: 5 bias=false <- h[t-1]
    param  v: 5 = normal
    c = attend(dot(v, tanh(k + q)), enc)
    layer  h: 4 tanh <- x, c, h[t-1]
    output h
}"""

GENERAL = """network Dec {
    input  enc: 4 memory
    input  x: 3
    layer  h: 4 tanh <- x, h[t-1]
    layer  kg: 4 bias=false <- enc
    c = attend(dot(kg, h), enc)
    layer  o: 4 tanh <- c, h
    output o
}"""

BACKWARD = """network Dec {
    input  enc: 10 memory
    input  x: 3
    e = tanh(enc * 2 + concat(b[t+1], x) * 0.5) / 2
    c = attend(mean(e) - sum(enc * concat(x, b[t+1])), e)
    layer  b: 7 tanh <- x, c, b[t+1]
    output b
}"""

POOLED = """network Pool {
    input  enc: 4 memory
    input  x: 3
    param  v: 4 = normal
    c = attend(dot(v, enc), enc)
    layer  h: 4 tanh <- x, c, h[t-1]
    output h
}"""

CLOCKED = """network Dec {
    input  enc: 4 memory
    input  x: 3
    layer  h: 4 tanh <- x, c, h[t-1]
    c = attend(dot(enc, h[t-1]) * every(2) + every(3), enc * every(2) + tanh(enc))
    output h
}"""

SPECS = {"clocked": CLOCKED, "additive": ADDITIVE, "general": GENERAL, "backward": BACKWARD, "pooled": POOLED}


def inputs(net: rnndsl.CompiledNetwork, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    size = net.network["enc"].size
    enc = torch.randn(3, 5, size, dtype=torch.float64, generator=gen)
    return {"enc": enc, "x": torch.randn(3, 4, 3, dtype=torch.float64, generator=gen)}


CALLS = {
    "whole": {},
    "memory lengths": {"memory_lengths": {"enc": torch.tensor([5, 2, 1])}},
    "both lengths": {"memory_lengths": {"enc": torch.tensor([3, 5, 1])}, "lengths": torch.tensor([4, 1, 3])},
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("name", sorted(SPECS))
def test_generated_equals_reference_forward_backward_and_weights(name: str, call: str) -> None:
    torch.manual_seed(0)
    net = rnndsl.compile(SPECS[name]).double()
    given = {k: v.requires_grad_() for k, v in inputs(net).items()}
    out, ref = net(**given, **CALLS[call]), reference(net, **given, **CALLS[call])
    (output,) = list(out)
    torch.testing.assert_close(out[output], ref[output])
    torch.testing.assert_close(out.attention["c"], ref.attention["c"])
    wanted = [*given.values(), *net.parameters()]
    got = torch.autograd.grad(out[output].pow(2).sum(), wanted, allow_unused=True)
    expected = torch.autograd.grad(ref[output].pow(2).sum(), wanted, allow_unused=True)
    for a, b in zip(got, expected, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)


def test_a_loop_with_attention_is_one_autograd_node_with_its_written_derivative() -> None:
    net = rnndsl.compile(ADDITIVE)
    code = net.code(grad=True)
    assert "K.loop(" in code and "K.attend_grad(" in code and "K.vjp(lambda _a0, _a1: K.attend" not in code
    assert "k = F.linear(enc, _W0_k)" in code.split("K.loop(")[0]  # the keys: once per sequence, before the loop


def test_the_generated_backward_equals_autograds_on_the_same_code() -> None:
    net = rnndsl.compile(ADDITIVE).double()
    given = {k: v.requires_grad_() for k, v in inputs(net, 1).items()}
    lengths = {"memory_lengths": {"enc": torch.tensor([2, 5, 4])}, "lengths": torch.tensor([4, 2, 1])}
    wanted = [*given.values(), *net.parameters()]
    got = torch.autograd.grad(net(**given, **lengths).h.sum(), wanted)
    net.generated_backward = False
    expected = torch.autograd.grad(net(**given, **lengths).h.sum(), wanted)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_gradcheck_through_the_generated_loop() -> None:
    net = rnndsl.compile(ADDITIVE).double()
    given = inputs(net, 2)
    keep = {"enc": torch.tensor([5, 3, 1])}

    def run(enc: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return net(enc=enc, x=x, memory_lengths=keep).h

    assert torch.autograd.gradcheck(run, (given["enc"].requires_grad_(), given["x"].requires_grad_()))


def test_the_weights_are_a_distribution_over_the_kept_positions_only() -> None:
    net = rnndsl.compile(ADDITIVE)
    given = {k: v.float() for k, v in inputs(net).items()}
    out = net(**given, memory_lengths={"enc": torch.tensor([5, 2, 1])}, lengths=torch.tensor([4, 4, 2]))
    w = out.attention["c"]
    assert w.shape == (3, 4, 5) and not w.requires_grad
    assert torch.all(w[1, :, 2:] == 0) and torch.all(w[2, :, 1:] == 0)
    torch.testing.assert_close(w[:, :2].sum(-1), torch.ones(3, 2))
    assert torch.all(w[2, 2:] == 0)  # past the third sequence's length


def test_a_memory_changes_the_output_only_within_its_length() -> None:
    net = rnndsl.compile(ADDITIVE)
    given = {k: v.float() for k, v in inputs(net).items()}
    keep = {"enc": torch.tensor([5, 2, 1])}
    before = net(**given, memory_lengths=keep).h
    padded = given["enc"].clone()
    padded[1, 2:] = 1e3
    padded[2, 1:] = -7e2  # padding may hold any (finite) values: it gets no weight
    after = net(enc=padded, x=given["x"], memory_lengths=keep).h
    torch.testing.assert_close(before, after)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: {**a, "enc": a["enc"][..., :3]}, r"input `enc`: expected \(batch, positions, 6\) \(a memory\)"),
        (lambda a: {**a, "enc": a["enc"][:, 0]}, r"input `enc`: expected \(batch, positions, 6\)"),
        (lambda a: {**a, "enc": a["enc"].double()}, r"input `enc`: expected torch.float32"),
        (lambda a: {**a, "enc": a["enc"][:2]}, r"batch sizes differ"),
        (lambda a: {**a, "enc": a["enc"][:, :0]}, r"memory `enc` has 0 positions"),
        (lambda a: {**a, "memory_lengths": {"enc": torch.tensor([5, 6, 1])}}, r"must lie in \[1, 5\]"),
        (lambda a: {**a, "memory_lengths": {"enc": torch.tensor([5, 2])}}, r"expected \(batch,\) = \(3,\)"),
        (lambda a: {**a, "memory_lengths": {"enx": torch.tensor([5, 2, 1])}}, r"did you mean `enc`"),
        (lambda a: {**a, "memory_lengths": torch.tensor([5, 2, 1])}, r"expected a dict by memory input"),
    ],
)
def test_bad_memories_are_refused_by_name(change: object, message: str) -> None:
    net = rnndsl.compile(ADDITIVE)
    given = {k: v.float() for k, v in inputs(net).items()}
    with pytest.raises(ValueError, match=message):
        net(**change(given))  # type: ignore[operator]


ENCODER_DECODER = """network Enc {
    input  w: tokens(7)
    layer  h: 6 tanh <- w, h[t-1]
    layer  g: 6 <- h
    output h
    output g last
}
network Dec {
    input  enc: 6 memory
    input  start: 6 static
    input  y: tokens(5) = sample(softmax(o[t-1]))
    init   y = 0
    layer  k: 4 bias=false <- enc
    layer  q: 4 bias=false <- s[t-1]
    param  v: 4 = normal
    c = attend(dot(v, tanh(k + q)), enc)
    layer  s: 6 tanh <- y, c, s[t-1]
    init   s = start
    layer  o: 5 <- s, c
    output o
}
model M {
    e = Enc
    d = Dec(enc = e.h, start = e.g)
}"""


def test_a_model_binds_an_encoders_every_step_with_its_lengths() -> None:
    with pytest.raises(rnndsl.SpecError, match="a memory takes every step"):
        rnndsl.load(ENCODER_DECODER.replace("enc = e.h", "enc = e.g"))
    torch.manual_seed(0)
    model = rnndsl.compile(ENCODER_DECODER)
    w, y = torch.randint(0, 7, (3, 6)), torch.randint(0, 5, (3, 4))
    lengths = {"e": torch.tensor([6, 2, 4]), "d": torch.tensor([4, 3, 1])}
    out = model(w=w, y=y, lengths=lengths)
    enc = model.net("e")(w=w, lengths=lengths["e"])
    dec = model.net("d")(
        enc=enc["h"], start=enc["g"], y=y, lengths=lengths["d"],
        memory_lengths={"enc": lengths["e"]},
    )  # fmt: skip
    torch.testing.assert_close(out.o, dec.o)
    padded = w.clone()
    padded[1, 2:] = 3  # the letters past the second word's length change nothing
    torch.testing.assert_close(model(w=padded, y=y, lengths=lengths).o, out.o)


def test_greedy_generation_and_beam_search_with_attention() -> None:
    torch.manual_seed(1)
    model = rnndsl.compile(ENCODER_DECODER)
    w, lengths = torch.randint(0, 7, (3, 6)), {"e": torch.tensor([6, 2, 4])}
    greedy = model.generate(5, w=w, lengths=lengths, greedy=True)
    beam = model.generate(5, w=w, lengths=lengths, beam=1)
    assert greedy.tokens.tolist() == beam.tokens.tolist()
    for gen in (greedy, beam, model.generate(5, w=w, lengths=lengths, beam=3)):
        weights = gen.attention["c"]
        assert weights.shape == (3, 5, 6)
        assert torch.all(weights[1, :, 2:] == 0)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
    torch.testing.assert_close(greedy.attention["c"], beam.attention["c"])
