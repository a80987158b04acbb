"""The README's Python examples run as written: every ```python block, in order, in one namespace, from a
folder that holds the examples and the checkpoint the README loads (a train run of a few steps)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks() -> list[str]:
    return BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_python_examples() -> None:
    assert len(blocks()) >= 5


def test_the_readmes_specs_check() -> None:
    import rnndsl

    specs = re.findall(r"^```\n(network .*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S | re.M)
    assert len(specs) >= 2
    for spec in specs:
        assert [w.format() for net in rnndsl.load_all(spec) for w in net.warnings] == []


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sklearn")
    from rnndsl.tasks import Digits
    from rnndsl.training import TrainConfig, train

    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(
            "examples/tasks/digits_gru.rnn",
            Digits(),
            TrainConfig(steps=2, batch=8, eval_every=0),
            out="runs/digits_gru-digits",
        )
        namespace: dict[str, object] = {}
        printed = io.StringIO()
        for i, code in enumerate(blocks()):
            with contextlib.redirect_stdout(printed):
                exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)  # the README's own text
            if i == 0:
                assert namespace["out"].h.shape == (8, 50, 128)  # type: ignore[attr-defined]
                assert namespace["more"].h.shape == (8, 30, 128)  # type: ignore[attr-defined]
    finally:
        torch.set_num_threads(threads)
    assert "input `x`: expected finite values, got NaN at sequence 2, step 7 x 7 input" in printed.getvalue()
    assert 0 <= float(namespace["accuracy"]) <= 1  # type: ignore[arg-type]
