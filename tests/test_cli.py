"""The `rnndsl` command's own behaviour: what `check` takes, the defaults and help of shared options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rnndsl
from rnndsl.cli import build_parser, main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_check_takes_a_folder_and_checks_every_spec_under_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLES)]) == 0
    printed = capsys.readouterr().out
    specs = sorted(EXAMPLES.rglob("*.rnn"))
    assert len(specs) > 20 and [
        line.removesuffix(": ok") for line in printed.splitlines() if line.endswith(": ok")
    ] == [str(p) for p in specs]


def test_check_of_a_folder_reports_a_bad_spec_and_an_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "specs" / "deep").mkdir(parents=True)
    (tmp_path / "specs" / "good.rnn").write_text("network G { input x: 2\n output x }\n")
    (tmp_path / "specs" / "deep" / "bad.rnn").write_text("network B { input x: 2\n output y }\n")
    (tmp_path / "empty").mkdir()
    assert main(["check", str(tmp_path / "specs"), str(tmp_path / "empty")]) == 1
    captured = capsys.readouterr()
    assert f"{tmp_path / 'specs' / 'good.rnn'}: ok" in captured.out
    assert f"{tmp_path / 'specs' / 'deep' / 'bad.rnn'}:2:" in captured.err
    assert f"{tmp_path / 'empty'}: error: a folder with no .rnn file under it" in captured.err
    assert "Errno" not in captured.err


def test_threads_default_to_one_and_the_help_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    for verb in ("train", "compare", "generate"):
        assert build_parser().parse_args([verb, "x.rnn"]).threads == 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        main(["train", str(EXAMPLES / "elman.rnn"), "--task", "digits", "--steps", "1", "--out", "/nonexistent/x"])
        assert torch.get_num_threads() == 1  # set before the run, whatever became of it
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--threads N torch's intra-op CPU threads for this process (default 1:" in text
    assert "FILE:NETWORK" in text and "--force" in text


def test_check_imports_no_torch() -> None:
    """Checking a spec needs the language, the graphs and the front end only: no torch, so it starts fast."""
    import subprocess
    import sys

    probe = (
        "import sys\nfrom rnndsl.cli import main\n"
        f"status = main(['check', {str(EXAMPLES)!r}])\n"
        "assert status == 0, status\nassert 'torch' not in sys.modules, 'rnndsl check imported torch'\n"
        "from rnndsl.cli import build_parser\nbuild_parser().parse_args(['train', 'x.rnn', '--task', 'digits'])\n"
        "assert 'torch' not in sys.modules, 'the parser imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, timeout=120)


def test_a_mistyped_option_is_said_with_its_commands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """Not the top level's usage, which lists the commands only."""
    with pytest.raises(SystemExit) as exit_:
        main(["train", "examples/elman.rnn", "--stesp", "5"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("usage: rnndsl train [-h]")
    assert err.endswith("rnndsl train: error: unrecognized arguments: --stesp 5\n")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"rnndsl {rnndsl.__version__}\n"
