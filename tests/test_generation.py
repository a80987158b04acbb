"""Self-fed inputs and generation: teacher forcing against free running, scheduled sampling, sampling
options, beam search against exhaustive search, and the errors of each call."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest
import torch

import rnndsl
from rnndsl.runtime.feed import Sampler
from rnndsl.runtime.reference import reference

ROOT = Path(__file__).resolve().parent.parent

NAMES = """
network Names {
    input  sex: 2 static
    input  w: tokens(6) = sample(softmax(y[t-1]))
    init   w = 0
    layer  h: 8 tanh <- w, sex, h[t-1]
    init   h = sex
    layer  y: 6 <- h
    output y
}
"""

VECTOR = """
network Echo {
    input  x: 3
    input  v: 2 = y[t-1]
    init   v = learned
    layer  h: 4 tanh <- x, v, h[t-1]
    layer  y: 2 <- h
    output y
}
"""


def names_net(seed: int = 0) -> rnndsl.CompiledNetwork:
    torch.manual_seed(seed)
    return rnndsl.compile(NAMES).double()


def sex(batch: int) -> torch.Tensor:
    return torch.eye(2, dtype=torch.float64)[torch.arange(batch) % 2]


def seeded(seed: int) -> Sampler:
    return Sampler(generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fuse_cells", [True, False])
def test_feeding_the_fed_tokens_back_reproduces_a_free_run(fuse_cells: bool) -> None:
    net = rnndsl.compile(NAMES, fuse_cells=fuse_cells).double()
    free = net(sex=sex(5), steps=7, sampler=seeded(1))
    w = free.fed["w"]
    assert w.shape == (5, 7) and bool((w[:, 0] == 0).all())  # the start token, `init w = 0`
    forced = net(sex=sex(5), w=w)
    torch.testing.assert_close(forced.y, free.y, rtol=0, atol=1e-12)
    torch.testing.assert_close(reference(net, sex=sex(5), w=w).y, free.y, rtol=0, atol=1e-10)
    torch.testing.assert_close(forced.state["h"], free.state["h"])


def test_a_free_run_draws_from_the_previous_output() -> None:
    """The token fed at step t is a draw from softmax(y[t-1]): with a generator seeded the same way,
    the same draws come from torch.multinomial on the teacher-forced outputs."""
    net = names_net()
    free = net(sex=sex(4), steps=6, sampler=seeded(3))
    gen = torch.Generator().manual_seed(3)
    y = net(sex=sex(4), w=free.fed["w"]).y
    for t in range(1, 6):
        drawn = torch.multinomial(torch.softmax(y[:, t - 1].float(), -1), 1, generator=gen).squeeze(1)
        assert torch.equal(drawn, free.fed["w"][:, t])


def test_a_vector_self_fed_input_runs_free_with_gradients() -> None:
    torch.manual_seed(0)
    net = rnndsl.compile(VECTOR).double()
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    free = net(x=x)
    v = free.fed["v"]
    torch.testing.assert_close(v[:, 0], net.initial("v").expand(3, -1))  # starts from its init
    torch.testing.assert_close(v[:, 1:], free.y[:, :-1])  # then its own previous output
    torch.testing.assert_close(net(x=x, v=v.detach()).y, free.y)
    free.y.sum().backward()
    assert net.initial("v").grad is not None and net.initial("v").grad.abs().sum() > 0  # through the feed


def test_a_vector_input_starts_from_an_init_of_the_static_inputs() -> None:
    """Found by the random-topology fuzzer: the start value of a fed input nobody reads with a delay."""
    torch.manual_seed(0)
    net = rnndsl.compile(
        "network S { input s: 2 static\n input v: 2 = y[t-1]\n init v = s * 2\n layer y: 2 tanh <- v, s\n output y }"
    ).double()
    s = torch.randn(3, 2, dtype=torch.float64)
    free = net(s=s, steps=4)
    torch.testing.assert_close(free.fed["v"][:, 0], s * 2)
    torch.testing.assert_close(free.fed["v"][:, 1:], free.y[:, :-1])


def test_free_run_continues_from_a_state() -> None:
    net = names_net()
    greedy = Sampler(greedy=True)
    whole = net(sex=sex(3), steps=6, sampler=greedy)
    first = net(sex=sex(3), steps=2, sampler=greedy)
    rest = net(sex=sex(3), steps=4, state=first.state, sampler=greedy)
    torch.testing.assert_close(torch.cat([first.y, rest.y], 1), whole.y)
    assert torch.equal(torch.cat([first.fed["w"], rest.fed["w"]], 1), whole.fed["w"])


def test_scheduled_sampling_mixes_given_and_fed_back_tokens() -> None:
    net = names_net()
    free = net(sex=sex(6), steps=8, sampler=seeded(5))
    given = torch.randint(0, 6, (6, 8))
    given[:, 0] = 0
    never = net(sex=sex(6), w=given, feed_back=0.0)
    torch.testing.assert_close(never.y, net(sex=sex(6), w=given).y)
    assert never.fed == {}
    always = net(sex=sex(6), w=given, feed_back=1.0, sampler=seeded(5))
    torch.testing.assert_close(always.y, free.y)  # every step after the first fed back: a free run
    half = net(sex=sex(6), w=given, feed_back=0.5, sampler=seeded(7))
    fed = half.fed["w"]
    same = fed == given
    assert bool(same[:, 0].all()) and 0 < int(same.sum()) < same.numel()
    torch.testing.assert_close(net(sex=sex(6), w=fed).y, half.y)  # whatever was fed, teacher-forced again


def test_greedy_generation_is_deterministic_and_beam_1_is_greedy() -> None:
    net = names_net()
    a = net.generate(9, sex=sex(4), greedy=True)
    b = net.generate(9, sex=sex(4), greedy=True)
    assert torch.equal(a.tokens, b.tokens) and a.tokens.shape == (4, 9)
    beam = net.generate(9, beam=1, sex=sex(4))
    assert torch.equal(beam.tokens, a.tokens)
    assert a.log_probs is not None and beam.log_probs is not None
    torch.testing.assert_close(beam.log_probs, a.log_probs)
    top1 = net.generate(9, sex=sex(4), top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(top1.tokens, a.tokens)


def test_sampling_is_reproducible_with_a_generator_and_log_probs_match_the_outputs() -> None:
    net = names_net()
    one = net.generate(7, sex=sex(5), generator=torch.Generator().manual_seed(11))
    two = net.generate(7, sex=sex(5), generator=torch.Generator().manual_seed(11))
    assert torch.equal(one.tokens, two.tokens)
    w = torch.cat([torch.zeros(5, 1, dtype=torch.long), one.tokens[:, :-1]], 1)  # what was fed
    logp = torch.log_softmax(net(sex=sex(5), w=w).y, -1)
    expected = logp.gather(2, one.tokens.unsqueeze(2)).squeeze(2)
    assert one.log_probs is not None
    torch.testing.assert_close(one.log_probs.double(), expected)


def test_a_prompt_is_kept_and_continued() -> None:
    net = names_net()
    g = net.generate(4, sex=sex(3), prompt=[[1, 2, 3], [4], []], greedy=True)
    assert g.tokens[0, :3].tolist() == [1, 2, 3] and g.tokens[1, 0].item() == 4
    assert g.lengths.tolist() == [7, 5, 4]
    assert g.log_probs is not None and bool(g.log_probs[0, :3].isnan().all())
    row1 = net.generate(4, sex=sex(3)[1:2], prompt=[[4]], greedy=True)
    assert g.tokens[1, :5].tolist() == row1.tokens[0].tolist()  # a row does not depend on the others' prompts


def test_stop_cuts_each_row() -> None:
    net = names_net()
    free = net.generate(12, sex=sex(8), generator=torch.Generator().manual_seed(2))
    stopped = net.generate(12, sex=sex(8), generator=torch.Generator().manual_seed(2), stop=0)
    for row, full, n in zip(stopped.lists(keep_stop=True), free.tokens.tolist(), stopped.lengths.tolist(), strict=True):
        cut = full.index(0) + 1 if 0 in full else 12
        assert row == full[:cut] and n == cut
    assert all(0 not in row for row in stopped.lists())
    pad = stopped.tokens[torch.arange(12).unsqueeze(0) >= stopped.lengths.unsqueeze(1)]
    assert bool((pad == 0).all())


def test_beam_search_finds_the_most_likely_sequence() -> None:
    """With a beam as wide as every sequence of 3 tokens, beam search is exhaustive search."""
    torch.manual_seed(4)
    net = rnndsl.compile(NAMES.replace("tokens(6)", "tokens(3)").replace("y: 6", "y: 3")).double()
    s = sex(2)

    def log_prob(b: int, seq: tuple[int, ...]) -> float:
        w = torch.tensor([[0, *seq[:-1]]])
        logp = torch.log_softmax(net(sex=s[b : b + 1], w=w).y[0].detach(), -1)
        return float(sum(logp[t, tok] for t, tok in enumerate(seq)))

    found = net.generate(3, beam=27, sex=s, length_penalty=0.0)
    for b in range(2):
        scores = {seq: log_prob(b, seq) for seq in itertools.product(range(3), repeat=3)}
        best = max(scores, key=scores.__getitem__)
        assert tuple(found.tokens[b].tolist()) == best
        assert found.scores is not None
        assert math.isclose(float(found.scores[b]), scores[best], rel_tol=1e-9)


def test_beam_search_with_stop_and_length_normalisation() -> None:
    net = names_net()
    g = net.generate(10, beam=4, sex=sex(3), stop=0)
    assert g.scores is not None and g.log_probs is not None
    for row, n, lp, score in zip(g.tokens.tolist(), g.lengths.tolist(), g.log_probs, g.scores, strict=True):
        assert 1 <= n <= 10 and (n == 10 or row[n - 1] == 0) and 0 not in row[: n - 1]
        assert math.isclose(float(lp[:n].sum()) / n, float(score), rel_tol=1e-6)


def test_generation_on_a_module_moved_and_cast() -> None:
    net = names_net().float()
    g = net.generate(5, sex=sex(2).float(), greedy=True)
    assert g.tokens.dtype == torch.long and g.tokens.shape == (2, 5)


def test_errors_name_what_is_wrong() -> None:
    net = names_net()
    cases = [
        (lambda: net(sex=sex(2), steps=3, feed_back=1.5), "feed_back: expected a probability in [0, 1]"),
        (lambda: net(sex=sex(2), steps=3, sampler="greedy"), "sampler: expected an rnndsl.feed.Sampler"),
        (lambda: net(sex=sex(2)), "give steps=N"),
        (lambda: reference(net, sex=sex(2), steps=3), "give `w`"),
        (lambda: net.generate(0, sex=sex(2)), "steps: expected a whole number"),
        (lambda: net.generate(3, sex=sex(2), stop=6), "stop: expected a token id in [0, 6)"),
        (lambda: net.generate(3, sex=sex(2), prompt=[[7]]), "prompt: expected a token id in [0, 6)"),
        (lambda: net.generate(3, sex=sex(2), prompt=torch.zeros(2, 2)), "prompt: expected (batch, steps) integer"),
        (lambda: net.generate(3, sex=sex(2), prompt=[[1]]), "prompt: expected 2 rows"),
        (lambda: net.generate(3, sex=sex(2), temperature=0.0), "temperature must be a number > 0, got 0.0"),
        # options of the wrong type: each named (they raised TypeError inside the sampler, or after a search)
        (lambda: net.generate(3, sex=sex(2), temperature="hot"), "temperature must be a number > 0, got 'hot'"),
        (lambda: net.generate(3, sex=sex(2), top_k=1.5), "top_k must be a whole number >= 0 (0: every token), got"),
        (lambda: net.generate(3, sex=sex(2), generator=3), "generator must be a torch.Generator or None, got int"),
        (lambda: net.generate(3, beam=2, sex=sex(2), length_penalty="x"), "length_penalty: expected a finite"),
        (lambda: net.generate(3, beam=2, sex=sex(2), length_penalty=math.nan), "length_penalty: expected a finite"),
        (lambda: net.generate(3, beam=2, sex=sex(2), prompt=[[1], [2]]), "prompt: options of sampling, which beam"),
        (lambda: net.generate(3, sex=sex(2), w=torch.zeros(2, 3, dtype=torch.long)), "give its first tokens as prompt"),
        (lambda: net.generate(3, beam=0, sex=sex(2)), "beam: expected a whole number >= 1"),
        (lambda: net.generate(3, input="x", sex=sex(2)), "no self-fed token input `x`"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()
    assert net.generate(3, beam=2, sex=sex(0)).tokens.shape == (0, 3)  # as sampling: an empty batch
    plain = rnndsl.compile("network P { input x: 2\n layer y: 2 <- x, y[t-1]\n output y }")
    with pytest.raises(ValueError, match="no self-fed input"):
        plain(torch.zeros(1, 2, 2), feed_back=0.5)
    with pytest.raises(ValueError, match="needs one self-fed token input"):
        plain.generate(3)
    echo = rnndsl.compile(VECTOR)
    with pytest.raises(ValueError, match="needs one self-fed token input"):
        echo.generate(3)


# ---- sample(...) of what is not a distribution ------------------------------------------------


def test_sample_of_what_may_be_negative_is_refused_at_check_time() -> None:
    """examples/generator.rnn fed `sample(-y[t-1])` checked, then failed mid-run with torch's
    "probability tensor contains either inf, nan or element < 0"."""
    text = (ROOT / "examples" / "generator.rnn").read_text(encoding="utf-8")
    text = text.replace("sample(y[t-1])", "sample(-y[t-1])")
    with pytest.raises(rnndsl.SpecError) as info:
        rnndsl.compile(text)
    (d,) = info.value.diagnostics
    assert (d.line, d.column) == (8, 36)
    assert d.message == "`sample` draws from a distribution, and `-y[t-1]` may be negative or all zero"
    assert d.hint == "write `sample(softmax(-y[t-1]))`: softmax turns scores into a distribution"


@pytest.mark.parametrize(
    "feed",
    [
        "sample(y[t-1])",  # a softmax layer
        "sample(p[t-1])",
        "sample(exp(h[t-1]))",
        "sample(sigmoid(h[t-1]) * 0.5 + p[t-1])",
        "sample(max(h[t-1], p[t-1]))",
        "sample(softplus(h[t-1]) / exp(h[t-2]))",
    ],
)
def test_what_is_positive_by_construction_may_be_sampled(feed: str) -> None:
    net = rnndsl.load(
        f"network S {{ input w: tokens(4) = {feed}\n layer h: 4 tanh <- w, h[t-1]\n"
        " layer y: 4 softmax <- h\n p = softmax(h)\n output y\n output p }"
    )
    assert net["w"].feed is not None


@pytest.mark.parametrize("arg", ["h[t-1]", "y[t-1] - 0.1", "min(h[t-1], y[t-1])", "relu(h[t-1])", "0 * y[t-1]"])
def test_what_may_be_negative_or_zero_may_not(arg: str) -> None:
    with pytest.raises(rnndsl.SpecError, match=re.escape(f"`sample` draws from a distribution, and `{arg}` may be")):
        rnndsl.load(
            f"network S {{ input w: tokens(4) = sample({arg})\n layer h: 4 tanh <- w, h[t-1]\n"
            " layer y: 4 softmax <- h\n output y }"
        )


POSITIVE = """
network G {
    input  s: 4 static
    input  w: tokens(5) = sample(exp(y[t-1]))
    layer  h: 8 tanh <- w, s, h[t-1]
    layer  y: 5 <- h
    output y
}
"""


def _poisoned(spec: str, value: float) -> rnndsl.CompiledNetwork:
    torch.manual_seed(0)
    net = rnndsl.compile(spec)
    with torch.no_grad():
        net.weight("y", "h").fill_(value)
    return net


@pytest.mark.parametrize(
    ("spec", "value", "what"),
    [
        (POSITIVE, math.nan, "NaN"),
        (POSITIVE, 1e4, "+inf"),  # exp overflows
        (NAMES.replace("sex", "s"), math.nan, "NaN"),  # through sample(softmax(...)): the logits
    ],
)
def test_a_draw_from_nan_or_inf_is_a_value_error_naming_the_input_and_step(spec: str, value: float, what: str) -> None:
    net = _poisoned(spec, value)
    s = torch.randn(3, net.network["s"].size)
    with pytest.raises(
        ValueError,
        match=rf"^self-fed input `w` at step 1: `sample` cannot draw a token from "
        rf"{re.escape(what)} \(sequence \d got \[",
    ) as info:
        net(s=s, steps=5)
    assert "probability tensor" not in str(info.value)
    with pytest.raises(ValueError, match=r"^self-fed input `w` at step 1: `sample` cannot draw"):
        net.generate(5, s=s, beam=2)


def test_a_draw_outside_any_loop_names_its_step() -> None:
    """A feed of static nodes is drawn for every step at once; the message names the first bad step."""
    net = rnndsl.compile(
        "network F { input s: 3 static\n input x: 2\n input w: tokens(3) = sample(exp(q))\n"
        " layer q: 3 <- s\n layer y: 3 <- w, x\n output y }"
    )
    with torch.no_grad():
        net.weight("q", "s").fill_(math.nan)
    with pytest.raises(ValueError, match=r"^self-fed input `w` at step 0: `sample` cannot draw a token from NaN"):
        net(s=torch.randn(2, 3), x=torch.randn(2, 4, 2))


def test_a_feed_of_static_nodes_draws_each_step_and_generates() -> None:
    """Drawn for every step at once, outside any loop: a token of its own at each step (one draw was shared by
    every step), and generate gives each drawn token's log-probability (it failed on the one score tensor)."""
    net = rnndsl.compile(
        "network F { input s: 3 static\n input w: tokens(3) = sample(exp(q))\n init w = 0\n"
        " layer q: 3 <- s\n layer h: 4 tanh <- w, h[t-1]\n output h }"
    )
    with torch.no_grad():
        net.weight("q", "s").zero_()
        net.bias("q").zero_()  # every token equally likely: 1/3
    s = torch.randn(2, 3)
    fed = net(s=s, steps=40, sampler=Sampler(generator=torch.Generator().manual_seed(0))).fed["w"]
    assert all(len(set(row[1:].tolist())) == 3 for row in fed)
    for options in ({}, {"greedy": True}, {"prompt": [[1], []]}):
        out = net.generate(6, s=s, **options)
        drawn = out.log_probs[~out.log_probs.isnan()]
        assert torch.allclose(drawn, torch.full_like(drawn, -math.log(3))), options
