"""The wheel carries every sub-package and the grammar, and the installed `rnndsl` command works away from
the checkout: every verb's help, check, draw, a few training steps and generation from that checkpoint."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from rnndsl.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (found,) = dist.glob("rnndsl-*.whl")
    return found


def test_wheel_holds_every_package_of_the_source_tree(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "rnndsl/grammars/rnn.lark" in names and "rnndsl/py.typed" in names
    # the playground works offline from the wheel: its page and the example specs ship inside
    assert {"rnndsl/play/static/index.html", "rnndsl/play/static/play.js", "rnndsl/play/static/play.css"} <= names
    examples = {
        f"rnndsl/examples/{p.relative_to(ROOT / 'examples').as_posix()}" for p in (ROOT / "examples").rglob("*.rnn")
    }
    assert examples <= names, "example specs missing from the wheel"
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "rnndsl").rglob("*.py")}
    assert modules - names == set(), "modules of the source tree missing from the wheel"


def test_wheel_ships_the_grammar_and_an_installed_copy_parses(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import importlib, rnndsl; p = importlib.import_module('rnndsl.frontend.parse'); "
        "assert 'site' in p.__file__, p.__file__; "
        "print(rnndsl.load('network N { input x: 2\\n layer h: 3 tanh <- x, h[t-1]\\n output h }').name)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == "N"


def _fresh_venv(path: Path) -> Path:
    """A venv without pip whose only link to this one is a .pth line reaching torch and the other
    dependencies (installing torch again would take minutes). That line is not a site directory, so the
    editable install of the checkout there stays inactive: `rnndsl` can only come from the wheel."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, capture_output=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "reuse_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_installed_cli_runs_every_verb_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path / "venv")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index", f"{wheel}[plot,tasks]"],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "work"
    shutil.copytree(ROOT / "examples", work / "examples")
    cli = str(tmp_path / "venv" / "bin" / "rnndsl")

    def run(*args: str) -> str:
        done = subprocess.run([cli, *args], cwd=work, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"rnndsl {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    where = subprocess.run(
        [str(python), "-c", "import rnndsl; print(rnndsl.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(tmp_path / "venv")), where
    assert "COMMAND" in run("--help")
    for verb in _verbs():
        assert f"usage: rnndsl {verb}" in run(verb, "--help")
    specs = sorted(str(p.relative_to(work)) for p in (work / "examples").rglob("*.rnn"))
    assert run("check", *specs).count(": ok") == len(specs)
    run("draw", "examples/jordan.rnn", "-o", "jordan.png")
    assert (work / "jordan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run(
        "train",
        "examples/tasks/names_gen.rnn",
        "--task",
        "names",
        "--task-arg",
        "by_sex=1",
        "--steps",
        "3",
        "--batch",
        "4",
        "--eval-every",
        "3",
        "--out",
        "run",
        "--quiet",
        "--threads",
        "1",
    )
    assert {"checkpoint.pt", "results.json", "curves.png"} <= {p.name for p in (work / "run").iterdir()}
    names = run("generate", "run/checkpoint.pt", "--count", "2", "--seed", "1")
    assert names.strip(), "generate printed nothing"


def _verbs() -> list[str]:
    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    return list(sub.choices)  # type: ignore[arg-type]


def test_old_import_paths_keep_working() -> None:
    """Modules moved into the layer packages; the paths users were shown still import the same objects."""
    import rnndsl
    import rnndsl.feed
    import rnndsl.guard
    import rnndsl.reference
    import rnndsl.runtime
    from rnndsl.runtime import feed, guard, network, reference

    assert rnndsl.reference.reference is reference.reference and rnndsl.feed.Sampler is feed.Sampler
    assert rnndsl.guard.NonFiniteError is guard.NonFiniteError
    assert rnndsl.CompiledNetwork is rnndsl.runtime.CompiledNetwork is network.CompiledNetwork
    assert rnndsl.State is network.State and rnndsl.Outputs is network.Outputs
    assert callable(rnndsl.graph) and callable(rnndsl.unroll) and callable(rnndsl.compile)
