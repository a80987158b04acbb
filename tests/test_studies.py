"""The LSTM variants of Greff et al. 2017 (examples/studies/lstm_variants): `rnndsl check` passes on every
spec without warnings, each fits the adding problem (and its names/ twin the names task), and each is the
vanilla LSTM with its one change."""

from __future__ import annotations

from pathlib import Path

import pytest

import rnndsl
from rnndsl.cli import main
from rnndsl.lang import syntax
from rnndsl.tasks import Adding, Names

FOLDER = Path(__file__).resolve().parent.parent / "examples" / "studies" / "lstm_variants"
VARIANTS = ["cifg", "nfg", "niaf", "nig", "noaf", "nog", "np", "v"]


def test_every_variant_checks(capsys: pytest.CaptureFixture[str]) -> None:
    assert sorted(p.stem for p in FOLDER.glob("*.rnn")) == VARIANTS
    assert main(["check", str(FOLDER)]) == 0
    printed = capsys.readouterr()
    assert printed.err == ""  # no warning either
    checked = [line.split(":")[0] for line in printed.out.splitlines() if line.endswith(": ok")]
    assert sorted(checked) == sorted(
        [str(FOLDER / f"{v}.rnn") for v in VARIANTS] + [str(FOLDER / "names" / f"{v}.rnn") for v in VARIANTS]
    )


def _net(name: str) -> rnndsl.Network:
    return rnndsl.load(FOLDER / f"{name}.rnn")


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_fits_the_adding_problem(name: str) -> None:
    net = _net(name)
    assert net.name == name.upper()
    assert Adding().bind(net).output == "y"


def test_each_variant_is_the_vanilla_lstm_with_one_change() -> None:
    nodes = {name: {n.name for n in _net(name).nodes} for name in VARIANTS}
    vanilla = nodes["v"]
    assert {"pi", "pf", "po", "ai", "af", "ao", "g", "i", "f", "o", "c", "h"} <= vanilla
    assert vanilla - nodes["nig"] == {"pi", "ai", "i"}
    assert vanilla - nodes["nfg"] == {"pf", "af", "f"}
    assert vanilla - nodes["nog"] == {"po", "ao", "o"}
    assert vanilla - nodes["np"] == {"pi", "pf", "po"}
    assert vanilla - nodes["cifg"] == {"pf", "af"}  # f stays, as 1 - i
    assert nodes["niaf"] == nodes["noaf"] == vanilla
    by_name = {name: {n.name: n for n in _net(name).nodes} for name in ("v", "niaf", "noaf", "cifg")}
    assert by_name["v"]["g"].activation == "tanh" and by_name["niaf"]["g"].activation == "identity"
    assert rnndsl.lang.syntax.show(by_name["noaf"]["h"].expr) == "o * c"
    assert rnndsl.lang.syntax.show(by_name["cifg"]["f"].expr) == "1 - i"
    params = {name: _net(name).parameter_count() for name in VARIANTS}
    assert params["v"] == params["niaf"] == params["noaf"] > params["np"] > params["cifg"] == params["nig"]


@pytest.mark.parametrize("name", VARIANTS)
def test_each_names_twin_is_its_variant_sized_for_the_names_task(name: str) -> None:
    """The same nodes, activations and equations; 27 one-hot characters in, 27 logits at every step, 64 units."""
    adding, names = _net(name), rnndsl.load(FOLDER / "names" / f"{name}.rnn")
    assert Names().bind(names).output == "y"
    assert [n.name for n in names.nodes] == [n.name for n in adding.nodes]
    for a, b in zip(adding.nodes, names.nodes, strict=True):
        assert (a.op, a.activation, a.sources) == (b.op, b.activation, b.sources)
        assert (a.expr and syntax.show(a.expr)) == (b.expr and syntax.show(b.expr))
        assert b.size == {2: 27, 1: 27, 32: 64}[a.size]
