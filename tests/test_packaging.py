"""The wheel carries the grammar, and an installed rnndsl finds it away from the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_the_grammar_and_an_installed_copy_parses(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("rnndsl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "rnndsl/grammars/rnn.lark" in names and "rnndsl/py.typed" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import importlib, rnndsl; p = importlib.import_module('rnndsl.parse'); "
             "assert 'site' in p.__file__, p.__file__; "
             "print(rnndsl.load('network N { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }').name)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                         check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "N"
