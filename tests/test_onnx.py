"""ONNX export against the real runtime: every example network and random topologies are exported once, then
run in onnxruntime at lengths the export never saw and compared with the module: float64 with random weights
to 1e-9 and 1e-7 (the same computation; a long chaotic loop amplifies the last bits), float32 with the module's
own initial weights to 1e-5; lengths, states, memories, delays up to 3 and bidirectional loops included.
`onnx.checker` (with shape inference) passes on every file written."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _differential import random_inputs, randomize
from hypothesis import HealthCheck, given, settings
from test_random_topologies import networks

import rnndsl
from rnndsl.runtime.export import ExportError, network_to_onnx
from rnndsl.runtime.network import CompiledNetwork

ort = pytest.importorskip("onnxruntime", reason="onnxruntime checks the exports: pip install onnxruntime")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def example_networks() -> list[tuple[Path, str]]:
    return [(p, n.name) for p in sorted(EXAMPLES.rglob("*.rnn")) for n in rnndsl.load_all(p)]


def session(net: CompiledNetwork, tmp_path: Path, **options: Any) -> Any:
    path = net.to_onnx(tmp_path / f"{net.network.name}.onnx", **options)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def feeds_for(call: dict[str, Any]) -> dict[str, np.ndarray]:
    """The graph's inputs for a module call: tensors by name, `lengths`, `lengths.MEMORY`, `state_in.NAME`."""
    feeds = {k: v.detach().numpy() for k, v in call.items() if isinstance(v, torch.Tensor)}
    if "steps" in call:
        feeds["steps"] = np.array(call["steps"], dtype=np.int64)
    for name, n in call.get("memory_lengths", {}).items():
        feeds[f"lengths.{name}"] = n.numpy()
    for name, v in (call.get("state") or {}).items():
        feeds[f"state_in.{name}"] = v.detach().numpy()
    return feeds


def assert_runs_alike(
    net: CompiledNetwork, sess: Any, call: dict[str, Any], atol: float, rtol: float, state: bool = False
) -> Any:
    with torch.no_grad():
        out = net(**call)
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, feeds_for(call)), strict=True))
    expected = {k: out[k] for k in out} | ({f"state_out.{k}": v for k, v in out.state.items()} if state else {})
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value.numpy(), atol=atol, rtol=rtol, err_msg=f"output {name}")
    return out


def padded_call(net: CompiledNetwork, batch: int, steps: int, dtype: torch.dtype, lengths: bool) -> dict[str, Any]:
    call = random_inputs(net, "cpu", batch, steps, dtype=dtype, grad=False)
    if lengths:
        gen = torch.Generator().manual_seed(steps)
        call["lengths"] = torch.randint(1, steps + 1, (batch,), generator=gen)
        call["lengths"][0] = steps  # the longest fills the batch, as a padded batch does
        call["memory_lengths"] = {
            n.name: torch.randint(1, call[n.name].shape[1] + 1, (batch,), generator=gen)
            for n in net.network.inputs
            if n.input_kind == "memory"
        }
    return call


@pytest.mark.parametrize(("path", "network"), example_networks(), ids=lambda v: v.stem if isinstance(v, Path) else v)
@pytest.mark.parametrize("lengths", [False, True], ids=["whole", "lengths"])
def test_every_example_runs_in_onnxruntime_as_in_torch(path: Path, network: str, lengths: bool, tmp_path: Path) -> None:
    net = randomize(rnndsl.compile(path, network).double().eval(), seed=3)
    sess = session(net, tmp_path, lengths=lengths)
    for batch, steps in [(3, 7), (2, 12)]:  # nothing in the file says either
        torch.manual_seed(steps)
        assert_runs_alike(net, sess, padded_call(net, batch, steps, torch.float64, lengths), atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize(
    ("spec", "operator"),
    [
        ("lstm.rnn", "LSTM"),
        ("gru.rnn", "GRU"),
        ("elman.rnn", "RNN"),
        ("bilstm.rnn", "LSTM"),  # a forward and a reverse cell (one operator), each reversed within its length
        ("tasks/names_gen.rnn", "GRU"),  # token ids one-hot and a static input beside them
        ("topdown.rnn", "Loop"),
        ("bidirectional.rnn", "RNN"),  # two Elman cells as one bidirectional operator
        ("tokens.rnn", "Loop"),
    ],
)
def test_float32_exports_agree_to_1e5(spec: str, operator: str, tmp_path: Path) -> None:
    """In float32 a standard cell becomes ONNX's own LSTM, GRU or RNN operator with the spec's weights; a
    custom loop an ONNX Loop."""
    net = rnndsl.compile(EXAMPLES / spec).eval()  # the weights a user starts from
    sess = session(net, tmp_path, lengths=True)
    import onnx

    nodes = onnx.load(str(tmp_path / f"{net.network.name}.onnx")).graph.node
    assert operator in {n.op_type for n in nodes}
    if "bi" in spec:  # a forward and a reverse cell of one kind and size: one bidirectional operator
        (cell,) = [n for n in nodes if n.op_type == operator]
        assert (
            onnx.helper.get_attribute_value(next(a for a in cell.attribute if a.name == "direction"))
            == b"bidirectional"
        )
    for steps in (9, 23):
        torch.manual_seed(steps)
        assert_runs_alike(net, sess, padded_call(net, 4, steps, torch.float32, True), atol=1e-5, rtol=1e-5)


def test_the_file_gets_a_new_files_mode(tmp_path: Path) -> None:
    """Written through a private temporary file, then given the mode the umask gives a new file (it stayed 0600:
    no other user, nor a web server, could read a deployed model)."""
    umask = os.umask(0o022)
    try:
        path = rnndsl.compile((EXAMPLES / "jordan.rnn").read_text()).to_onnx(tmp_path / "j.onnx")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["j.onnx"]


def test_the_state_goes_in_and_out(tmp_path: Path) -> None:
    """`state=True`: a chunk continues from the state the last one left, as `state=` does in torch."""
    net = randomize(rnndsl.compile(EXAMPLES / "skip2.rnn").double().eval(), seed=1)
    sess = session(net, tmp_path, lengths=True, state=True)
    first = net(**random_inputs(net, "cpu", 3, 6, grad=False))
    call = padded_call(net, 3, 5, torch.float64, True) | {"state": first.state}
    assert_runs_alike(net, sess, call, atol=1e-10, rtol=1e-10, state=True)


SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@settings(max_examples=15, **SETTINGS)  # type: ignore[arg-type]
@given(networks())
def test_random_topologies_run_in_onnxruntime_as_in_torch(text: str) -> None:
    """In float64 with random weights; where onnxruntime has no float64 kernel for an operator (Erf, which
    gelu needs), in float32 with the module's own initial weights."""
    import tempfile

    for dtype, tolerance in [(torch.float64, (1e-9, 1e-7)), (torch.float32, (1e-5, 1e-4))]:
        net = rnndsl.compile(text).to(dtype).eval()
        if dtype == torch.float64:
            randomize(net, seed=5)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                sess = session(net, Path(tmp), lengths=True)
            except ort.capi.onnxruntime_pybind11_state.NotImplemented:
                assert dtype == torch.float64 and "gelu" in text, text
                continue
            for batch, steps in [(2, 3), (3, 6)]:
                torch.manual_seed(steps)
                try:
                    assert_runs_alike(net, sess, padded_call(net, batch, steps, dtype, True), *tolerance)
                except AssertionError as err:
                    raise AssertionError(f"{err}\nspec:\n{text}") from None
        return


def test_what_cannot_be_exported_is_refused_with_its_line() -> None:
    net = rnndsl.compile("network N {\n input x: 3\n output x }")
    with pytest.raises(ExportError, match=r"<string>:3:2: error: cannot export output `x`, an input") as err:
        network_to_onnx(net)
    assert "output x }\n     ^" in str(err.value) and "help: output an expression of it instead" in str(err.value)
    net = rnndsl.compile("network N {\n input x: 3\n layer h: 4 tanh <- x, h[t+1]\n output h }")
    with pytest.raises(ExportError, match=r"cannot export the state of a network that reads the future"):
        network_to_onnx(net, state=True)


@pytest.mark.fuzz
@settings(max_examples=300, **SETTINGS)  # type: ignore[arg-type]
@given(networks(max_nodes=5))
def test_random_topologies_run_in_onnxruntime_as_in_torch_long(text: str) -> None:
    test_random_topologies_run_in_onnxruntime_as_in_torch.hypothesis.inner_test(text)  # type: ignore[attr-defined]


@pytest.mark.parametrize("spec", ["g2p_gru.rnn", "g2p_attention.rnn"])
def test_an_encoder_decoder_model_exports_as_one_graph(spec: str, tmp_path: Path) -> None:
    model = rnndsl.compile(EXAMPLES / "tasks" / spec).double().eval()
    for i, p in enumerate(model.parameters()):
        p.data.normal_(0, 0.3, generator=torch.Generator().manual_seed(i))
    sess = ort.InferenceSession(str(model.to_onnx(tmp_path / "m.onnx", lengths=True)))
    assert [i.name for i in sess.get_inputs()] == ["letters", "lengths.enc", "phone", "lengths.dec"]
    for batch, letters, phones in [(4, 9, 11), (2, 5, 13)]:
        gen = torch.Generator().manual_seed(letters)
        x, y = (
            torch.randint(1, 27, (batch, letters), generator=gen),
            torch.randint(1, 40, (batch, phones), generator=gen),
        )
        nx, ny = (
            torch.randint(1, letters + 1, (batch,), generator=gen),
            torch.randint(1, phones + 1, (batch,), generator=gen),
        )
        nx[0], ny[0] = letters, phones
        with torch.no_grad():
            expected = model(letters=x, phone=y, lengths={"enc": nx, "dec": ny}).y
        feeds = {"letters": x.numpy(), "phone": y.numpy(), "lengths.enc": nx.numpy(), "lengths.dec": ny.numpy()}
        np.testing.assert_allclose(sess.run(None, feeds)[0], expected.numpy(), atol=1e-9, rtol=1e-7)


def test_greedy_generation_exports_as_a_loop(tmp_path: Path) -> None:
    net = randomize(rnndsl.compile(EXAMPLES / "tasks" / "names_gen.rnn").eval(), seed=2, scale=0.4)
    sex = torch.eye(2)[[0, 1, 1, 0, 1]]
    with torch.no_grad():
        stop = int(net.generate(12, sex=sex, greedy=True).tokens[1, 3])  # a token some row says: rows stop
    sess = ort.InferenceSession(str(net.to_onnx(tmp_path / "g.onnx", greedy=True, stop=stop)))
    assert [i.name for i in sess.get_inputs()] == ["steps", "sex"]
    assert [o.name for o in sess.get_outputs()] == ["tokens", "lengths"]
    for steps in (3, 12):
        with torch.no_grad():
            expected = net.generate(steps, sex=sex, greedy=True, stop=stop)
        tokens, lengths = sess.run(None, {"sex": sex.numpy(), "steps": np.array(steps)})
        assert tokens.tolist() == expected.tokens.tolist() and lengths.tolist() == expected.lengths.tolist()
    assert expected.lengths.min() < 12  # the cut at the stop token was exercised


def test_rnndsl_generate_and_onnxruntime_say_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A trained g2p checkpoint, exported with `rnndsl export --greedy`, pronounces words in onnxruntime
    alone as `rnndsl generate` does."""
    from test_train import SMALL_G2P

    from rnndsl.cli import main
    from rnndsl.tasks.cmudict import PHONEMES, encode_letters

    spec = tmp_path / "g2p.rnn"
    spec.write_text(SMALL_G2P, encoding="utf-8")
    args = ["--task-arg", "validation_size=8", "--task-arg", "test_size=8", "--steps", "30", "--batch", "16"]
    assert (
        main(["train", str(spec), "--task", "g2p", *args, "--lr", "0.02", "--out", str(tmp_path / "run"), "--quiet"])
        == 0
    )
    checkpoint = str(tmp_path / "run" / "checkpoint.pt")
    words = ["cat", "phonetic", "rnn"]
    capsys.readouterr()
    assert main(["generate", checkpoint, *words]) == 0
    said = [line.split()[1:] for line in capsys.readouterr().out.splitlines()]
    assert main(["export", checkpoint, "-o", str(tmp_path / "g2p.onnx"), "--greedy", "--stop", "0", "--lengths"]) == 0
    assert capsys.readouterr().err == ""  # a checkpoint: trained weights, no warning
    sess = ort.InferenceSession(str(tmp_path / "g2p.onnx"))
    letters = [encode_letters(w) for w in words]
    x = np.array([ids + [0] * (8 - len(ids)) for ids in letters])
    steps = np.array(max(map(len, letters)) + 10)  # what `rnndsl generate` gives each word
    tokens, lengths = sess.run(None, {"letters": x, "lengths.enc": np.array([len(i) for i in letters]), "steps": steps})
    spoken = [
        [PHONEMES[i] for i in row[:n] if i != 0] for row, n in zip(tokens.tolist(), lengths.tolist(), strict=True)
    ]
    assert spoken == said


def test_rnndsl_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rnndsl.cli import main

    out = tmp_path / "stacked.onnx"
    assert main(["export", str(EXAMPLES / "stacked.rnn"), "-o", str(out), "--network", "Stacked", "--lengths"]) == 0
    io = capsys.readouterr()
    assert io.out == f"wrote {out}\n" and "freshly initialised weights" in io.err
    assert [i.name for i in ort.InferenceSession(str(out)).get_inputs()] == ["x", "lengths"]
    for argv, message in [
        (
            ["export", str(EXAMPLES / "stacked.rnn"), "-o", str(out)],
            "holds several networks (Cell, Stacked); pick one with --network NAME",
        ),
        (
            ["export", str(EXAMPLES / "jordan.rnn"), "-o", str(out), "--greedy"],
            "greedy generation: it needs one network that feeds itself a token",
        ),
        (
            ["export", str(EXAMPLES / "jordan.rnn"), "-o", str(out), "--stop", "0"],
            "--stop ends greedy generation: give --greedy too",
        ),
        (
            ["export", str(EXAMPLES / "jordan.rnn"), "-o", str(tmp_path / "no" / "j.onnx")],
            f"{tmp_path / 'no'}: no such folder",
        ),
        (["export", str(tmp_path / "nothing.pt"), "-o", str(out)], "no checkpoint at"),
        (  # a model's export carries no state (it raised Python's own TypeError text)
            ["export", str(EXAMPLES / "tasks" / "g2p_attention.rnn"), "-o", str(out), "--state"],
            "--state is for one network's graph; `G2PAttention` is a model",
        ),
        (  # a token that can never come, as generate(stop=...) refuses it
            ["export", str(EXAMPLES / "tasks" / "names_gen.rnn"), "-o", str(out), "--greedy", "--stop", "99"],
            "stop: expected a token id in [0, 27) of input `w`, got 99",
        ),
        (  # a folder: named as given (not a temporary file), and nothing left beside it
            ["export", str(EXAMPLES / "jordan.rnn"), "-o", str(tmp_path)],
            f"{tmp_path}: is a folder: give a file's name, such as model.onnx",
        ),
    ]:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
