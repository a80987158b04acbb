"""`rnndsl generate` on a g2p model with attention: the pronunciations as before, and a heatmap of what
each phoneme's step weighed of each letter (attention.png, or --attention PATH); --attention refused
where there is nothing to draw. Checkpoints: the example specs with narrow layers, trained 2 steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnndsl.cli import build_parser, main
from rnndsl.tasks import make_task
from rnndsl.tasks.base import Batch
from rnndsl.tasks.cmudict import decode_phonemes, encode_letters
from rnndsl.tasks.g2p import G2P, EncoderDecoderBinding
from rnndsl.training import load_model, read_checkpoint

pytest.importorskip("matplotlib")

TASKS = Path(__file__).resolve().parent.parent / "examples" / "tasks"
WORDS = ["cat", "photograph"]  # two lengths: the shorter word's memory is masked in the batch


def _train(folder: Path, spec: str, narrow: dict[str, str]) -> Path:
    text = (TASKS / spec).read_text(encoding="utf-8")
    for wide, small in narrow.items():
        text = text.replace(wide, small)
    (folder / spec).write_text(text, encoding="utf-8")
    args = ["train", str(folder / spec), "--task", "g2p", "--steps", "2", "--batch", "8", "--eval-every", "2"]
    sizes = ["--task-arg", "validation_size=8", "--task-arg", "test_size=8"]
    assert main([*args, *sizes, "--out", str(folder / "run"), "--quiet"]) == 0
    return folder / "run" / "checkpoint.pt"


@pytest.fixture(scope="module")
def attention(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("attention"), "g2p_attention.rnn", {"128": "8", "256": "16"})


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("gru"), "g2p_gru.rnn", {"256": "12"})


def _said(checkpoint: Path, words: list[str]) -> list[str]:
    """The lines `generate` printed before attention: each word, then its greedy phonemes (no boundary)."""
    net = load_model(checkpoint)
    task = make_task(**read_checkpoint(checkpoint)["task"])
    binding = task.bind(net.model)
    assert isinstance(binding, EncoderDecoderBinding)
    letters = [torch.tensor(encode_letters(w)) for w in words]
    padded = torch.nn.utils.rnn.pad_sequence(letters, batch_first=True)
    batch = Batch(padded, torch.zeros(len(words), 1), torch.tensor([len(x) for x in letters]))
    with torch.no_grad():
        ids = binding.decode(net, batch, max(map(len, words)) + 10, 1)
    return [f"{w:<20} {' '.join(decode_phonemes(i))}" for w, i in zip(words, ids, strict=True)]


def _png(path: Path) -> tuple[int, ...]:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shape: tuple[int, ...] = matplotlib.image.imread(path).shape
    return shape


def test_generate_writes_the_heatmap_beside_the_checkpoint(attention: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (attention.parent / "attention.png").unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["generate", str(attention), *WORDS]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == _said(attention, WORDS)  # stdout holds the pronunciations, as before
    assert err == f"wrote {attention.parent / 'attention.png'}\n"
    height, width, channels = _png(attention.parent / "attention.png")
    assert 200 < height < 2000 and 400 < width < 3000 and channels in (3, 4)


def test_attention_names_the_file_and_beam_search_draws_too(
    attention: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep" / "words.png"
    capsys.readouterr()
    assert main(["generate", str(attention), "cat", "--beam", "2", "--attention", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.split()[0] == "cat" and err == f"wrote {path}\n"
    assert len(_png(path)) == 3
    svg = tmp_path / "words.svg"  # the suffix says the format (it had been a PNG whatever the name)
    assert main(["generate", str(attention), "cat", "--attention", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    capsys.readouterr()
    assert main(["generate", str(attention), "cat", "--attention", str(tmp_path / "words.txt")]) == 1
    assert capsys.readouterr() == ("", f"rnndsl generate: error: {tmp_path / 'words.txt'}: a figure is written as "
                                   ".png, .svg, .pdf\n")  # fmt: skip


def test_attention_is_refused_without_an_attention_node(
    summary: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["generate", str(summary), "cat", "--attention", str(tmp_path / "a.png")]) == 1
    assert capsys.readouterr().err == (
        "rnndsl generate: error: --attention draws what a decoder's `attend(...)` weighed, and model `G2P` has "
        "no attention node (its decoder reads the encoder's summary only); train one with attention, such as "
        "examples/tasks/g2p_attention.rnn, or leave --attention out\n"
    )
    assert not (tmp_path / "a.png").exists()
    assert main(["generate", str(summary), *WORDS]) == 0  # without the flag: pronunciations only
    out, err = capsys.readouterr()
    assert out.splitlines() == _said(summary, WORDS) and err == ""
    assert not (summary.parent / "attention.png").exists()


def test_attention_is_refused_for_a_task_other_than_g2p() -> None:
    from rnndsl.training.commands import _generate_options

    args = build_parser().parse_args(["generate", "run/checkpoint.pt", "--attention", "a.png"])
    with pytest.raises(ValueError) as refused:
        _generate_options(args, "names")
    assert str(refused.value) == (
        "--attention draws a g2p model's alignment of letters and phonemes; task `names` has none to draw"
    )


def test_each_phoneme_weighs_the_word_s_letters_to_one(attention: Path) -> None:
    net = load_model(attention)
    task = make_task(**read_checkpoint(attention)["task"])
    assert isinstance(task, G2P) and task.attends(net) == ["c"]
    for beam in (1, 2):
        with torch.no_grad():
            said = task.pronounce(net, WORDS, 10, {"beam": beam})
        assert [p.word for p in said] == WORDS
        for p in said:
            weights = p.attention["c"]
            assert weights.shape == (len(p.said), len(p.word))
            torch.testing.assert_close(weights.sum(1), torch.ones(len(p.said)), rtol=0, atol=1e-5)
            assert bool((weights >= 0).all())
            assert "." not in p.said[:-1]  # the boundary only ends a row
        with torch.no_grad():
            assert task.show(net, WORDS, 10, {"beam": beam}) == [p.line() for p in said]
    shown = task.pronounce(net, [], 3, {})  # held-out words, with the dictionary's pronunciation
    assert len(shown) == 3 and all(p.truth and "(dictionary: " in p.line() for p in shown)


def test_generate_help_tells_of_the_heatmap(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--attention PATH" in text and "attention.png beside the checkpoint" in text
