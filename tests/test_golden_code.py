"""Generated code is an artefact: the forward (`net.code()`) and training (`net.code(grad=True)`) variants of
every network of every example spec, fused and with `fuse_cells=False` where they differ, and free-running
where a network feeds itself, are golden files in tests/golden/code/. A change to code generation shows in
review as a diff of these files. Rewrite them with

    RNNDSL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_code.py

(the CPU variants: code generation is keyed by device type, and the goldens are the CPU's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import rnndsl

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GOLDEN = ROOT / "tests" / "golden" / "code"


def networks() -> list[tuple[Path, str]]:
    return [(path, net.name) for path in sorted(EXAMPLES.rglob("*.rnn")) for net in rnndsl.load_all(path)]


def golden_name(path: Path, network: str) -> str:
    return "__".join(path.relative_to(EXAMPLES).with_suffix("").parts) + f".{network}.txt"


def generated(path: Path, network: str) -> str:
    """Every variant of one network's generated code, each under a header saying which."""
    fused, plain = rnndsl.compile(path, network), rnndsl.compile(path, network, fuse_cells=False)
    variants = {"code()": fused.code(), "code(grad=True)": fused.code(grad=True)}
    if plain.code() != variants["code()"]:
        variants["fuse_cells=False: code()"] = plain.code()
        variants["fuse_cells=False: code(grad=True)"] = plain.code(grad=True)
    if fused.network.self_fed:
        variants["code(free=True)"] = fused.code(free=True)
    return "".join(
        f"# ==== {path.relative_to(ROOT)} network {network}: {what}\n{code.rstrip()}\n\n"
        for what, code in variants.items()
    )


@pytest.mark.parametrize(("path", "network"), networks(), ids=lambda v: v.stem if isinstance(v, Path) else v)
def test_generated_code_matches_its_golden(path: Path, network: str) -> None:
    golden = GOLDEN / golden_name(path, network)
    actual = generated(path, network)
    if os.environ.get("RNNDSL_UPDATE_GOLDEN"):
        golden.write_text(actual, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}; run with RNNDSL_UPDATE_GOLDEN=1 to create it"
    assert actual == golden.read_text(encoding="utf-8"), f"generated code of {network} changed: see {golden}"


def test_every_golden_belongs_to_an_example() -> None:
    wanted = {golden_name(path, network) for path, network in networks()}
    assert {p.name for p in GOLDEN.glob("*.txt")} <= wanted, "golden files of networks that no example has"
