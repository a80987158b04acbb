"""Models: networks run one after another on their own time axes (encoder-decoder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import rnndsl
from rnndsl.runtime.model import CompiledModel

SPEC = """
network Speller {
    input  letters: tokens(7)
    layer  h: 6 tanh <- letters, h[t-1]
    output h last
}
network Speaker {
    input  context: 6 static
    input  phone: tokens(5) = sample(softmax(y[t-1]))
    init   phone = 0
    layer  h: 6 tanh <- phone, context, h[t-1]
    init   h = context
    layer  y: 5 <- h
    output y
}
model G2P {
    enc = Speller
    dec = Speaker(context = enc.h)
}
"""


def model(seed: int = 0) -> CompiledModel:
    torch.manual_seed(seed)
    m = rnndsl.compile(SPEC)
    assert isinstance(m, CompiledModel)
    return m.double()


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    letters = torch.randint(0, 7, (4, 6), generator=g)
    phones = torch.randint(1, 5, (4, 5), generator=g)
    phones[:, 0] = 0
    return letters, torch.tensor([6, 3, 2, 1]), phones, torch.tensor([5, 4, 2, 1])


def test_a_model_is_its_networks_run_in_order() -> None:
    m = model()
    letters, nl, phones, npn = batch()
    out = m(letters=letters, phone=phones, lengths={"enc": nl, "dec": npn})
    enc, dec = m.net("enc"), m.net("dec")
    context = enc(letters=letters, lengths=nl).h
    expected = dec(context=context, phone=phones, lengths=npn).y
    torch.testing.assert_close(out.y, expected, rtol=0, atol=0)
    assert list(out) == ["y"] and out.y.shape == (4, 5, 5)


def test_gradients_reach_the_encoder() -> None:
    m = model()
    letters, nl, phones, npn = batch()
    m(letters=letters, phone=phones, lengths={"enc": nl, "dec": npn}).y.sum().backward()
    grad = m.net("enc").weight("h", "h[t-1]").grad
    assert grad is not None and grad.abs().sum() > 0


def test_training_end_to_end_lowers_the_loss() -> None:
    """Reverse a 4-letter word (an encoder-decoder task no single time axis fits): 60 Adam steps."""
    torch.manual_seed(0)
    m = rnndsl.compile(SPEC.replace("6", "24").replace("tokens(7)", "tokens(5)"))
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        letters = torch.randint(1, 5, (32, 4), generator=g)
        target = torch.cat([letters.flip(1), torch.zeros(32, 1, dtype=torch.long)], 1)  # then the end symbol
        given = torch.cat([torch.zeros(32, 1, dtype=torch.long), target[:, :-1]], 1)
        y = m(letters=letters, phone=given).y
        loss = torch.nn.functional.cross_entropy(y.reshape(-1, 5), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10, losses


def test_generation_encodes_then_decodes() -> None:
    m = model()
    letters, nl, _, _ = batch()
    greedy = m.generate(6, letters=letters, lengths={"enc": nl}, greedy=True, stop=0)
    context = m.net("enc")(letters=letters, lengths=nl).h
    direct = m.net("dec").generate(6, context=context, greedy=True, stop=0)
    assert torch.equal(greedy.tokens, direct.tokens) and torch.equal(greedy.lengths, direct.lengths)
    beam1 = m.generate(6, beam=1, letters=letters, lengths={"enc": nl}, stop=0)
    assert torch.equal(beam1.tokens, greedy.tokens)
    wide = m.generate(6, beam=4, letters=letters, lengths={"enc": nl}, stop=0)
    assert wide.tokens.shape[0] == 4 and wide.scores is not None


def test_free_running_decoder_inside_the_model() -> None:
    m = model()
    letters, nl, _, _ = batch()
    free = m(letters=letters, lengths={"enc": nl}, steps={"dec": 5})
    assert free.fed["phone"].shape == (4, 5)
    forced = m(letters=letters, phone=free.fed["phone"], lengths={"enc": nl})
    torch.testing.assert_close(forced.y, free.y)


def test_compile_picks_the_model_or_a_network(tmp_path: Path) -> None:
    path = tmp_path / "g2p.rnn"
    path.write_text(SPEC, encoding="utf-8")
    assert isinstance(rnndsl.compile(path), CompiledModel)
    assert isinstance(rnndsl.compile(path, "Speller"), rnndsl.CompiledNetwork)
    with pytest.raises(ValueError, match=r"no network or model `G2Q`.*did you mean `G2P`"):
        rnndsl.compile(path, "G2Q")


def test_state_dict_round_trip() -> None:
    a, b = model(0), model(1)
    b.load_state_dict(a.state_dict())
    letters, nl, phones, npn = batch()
    lengths = {"enc": nl, "dec": npn}
    torch.testing.assert_close(
        a(letters=letters, phone=phones, lengths=lengths).y, b(letters=letters, phone=phones, lengths=lengths).y
    )
    assert "instances.enc.layers.h.weight.1" in a.state_dict()


def test_errors_name_the_instance_and_the_input() -> None:
    m = model()
    letters, nl, phones, _ = batch()
    cases = [
        (
            lambda: m(letters=letters, phones=phones),
            "unknown input `phones`; model `G2P` takes: letters, phone (did you mean `phone`?)",
        ),
        (lambda: m(letters=letters, phone=phones, lengths=nl), "lengths: a model's instances each have their own"),
        (lambda: m(letters=letters, phone=phones, lengths={"encoder": nl}), "lengths: no instance `encoder`"),
        (
            lambda: m(letters=letters.float(), phone=phones),
            "instance `enc` (Speller): input `letters`: expected integer token ids",
        ),
        (lambda: m(letters=letters, phone=phones[:2]), "instance `dec` (Speaker): batch sizes differ"),
        (lambda: m.generate(3, letters=letters, phone=phones), "unknown input `phone`"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("dec = Speaker", "__class__ = Speaker", "<string>:18:5"),  # crashed: KeyError "attribute '__class__' ..."
        ("model G2P", "model __class__", "<string>:16:7"),  # was accepted
        (
            "enc = Speller\n    dec = Speaker(context = enc.h)",
            "_enc = Speller\n    dec = Speaker(context = _enc.h)",
            "<string>:17:5",
        ),
    ],
)
def test_model_and_instance_names_follow_the_name_rules(old: str, new: str, where: str) -> None:
    name = new.split()[1] if new.startswith("model") else new.split()[0]
    with pytest.raises(rnndsl.SpecError) as info:
        rnndsl.compile(SPEC.replace(old, new))
    (d,) = info.value.diagnostics
    assert d.format().startswith(f"{where}: error: `{name}`: names may not start with '_' or contain '__'")
    assert d.span.end_column - d.span.column == len(name)  # the caret is under the name


@pytest.mark.parametrize("name", ["train", "forward", "keys", "to", "cuda", "training", "float"])
def test_instances_may_share_a_name_with_a_module_method(name: str) -> None:
    """`train = Speller` crashed with torch's KeyError "attribute 'train' already exists"."""
    m = rnndsl.compile(
        SPEC.replace(
            "enc = Speller\n    dec = Speaker(context = enc.h)",
            f"{name} = Speller\n    dec = Speaker(context = {name}.h)",
        )
    )
    letters, phones = torch.randint(1, 7, (2, 5)), torch.randint(1, 5, (2, 4))
    out = m(letters=letters, phone=phones, lengths={name: torch.tensor([5, 3])})
    assert out.y.shape == (2, 4, 5) and m.net(name) is not m.net("dec")
    assert any(k.startswith(f"instances.{name}__.") for k in m.state_dict())
    m.train()  # the module's own methods still work
