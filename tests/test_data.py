"""Your own data: `--data FILE` (.npz, .jsonl) for train and compare, every kind of target, the fit check,
bad files (one message naming the array, nothing written), resume and load of such runs, and a task of
one's own installed under the `rnndsl.tasks` entry-point group."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import rnndsl
from rnndsl.cli import main
from rnndsl.tasks import ArrayTask, Data, DataError, make_task, parse_options
from rnndsl.training import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # as the commands run: one thread

pytest.importorskip("matplotlib")

QUICK = ["--steps", "4", "--batch", "8", "--eval-every", "2", "--quiet"]


def _spec(tmp_path: Path, size: int, out: int, last: bool, tokens: int = 0, name: str = "net.rnn") -> Path:
    source = f"tokens({tokens})" if tokens else str(size)
    path = tmp_path / name
    path.write_text(
        f"network Net {{\n input x: {source}\n layer h: 6 tanh <- x, h[t-1]\n layer y: {out} <- h\n"
        f" output y{' last' if last else ''}\n}}\n"
    )
    return path


def _arrays(n: int = 40, steps: int = 6, size: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, steps, size)).astype(np.float32)
    lengths = g.integers(2, steps + 1, n)
    return x, lengths


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(args)
    printed = capsys.readouterr()
    return status, printed.out, printed.err


# ---- the kinds of task -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "metrics"),
    [
        ("class", {"accuracy", "loss"}),
        ("tags", {"accuracy", "cross_entropy"}),
        ("values", {"mse"}),
        ("steps", {"mse"}),
    ],
)
def test_each_kind_of_target_trains_from_an_npz(
    kind: str, metrics: set[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, lengths = _arrays()
    y = {
        "class": (x[:, 0, 0] > 0).astype(np.int64),
        "tags": (x[..., 0] > 0).astype(np.int64) * 2,  # classes 0 and 2: three outputs
        "values": x.sum(1)[:, :2],
        "steps": np.cumsum(x, axis=1)[..., :1],
    }[kind]
    np.savez(tmp_path / "d.npz", x=x, y=y, lengths=lengths)
    out_size = {"class": 2, "tags": 3, "values": 2, "steps": 1}[kind]
    spec = _spec(tmp_path, 3, out_size, last=kind in ("class", "values"))
    status, printed, err = _run(
        ["train", str(spec), "--data", str(tmp_path / "d.npz"), *QUICK, "--out", str(tmp_path / "r")], capsys
    )
    assert status == 0, err
    assert printed.startswith("Net on data (d.npz): 4 steps in ")
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert set(results["metrics"]["test"]) == metrics
    assert results["primary_metric"] == ("accuracy" if kind in ("class", "tags") else "mse")
    assert results["task"]["path"] == str((tmp_path / "d.npz").resolve()) and len(results["task"]["sha256"]) == 64
    assert all(np.isfinite(v) for v in results["metrics"]["test"].values())


def test_padding_past_a_length_is_not_read(tmp_path: Path) -> None:
    """Garbage (NaN, huge values) past each length changes nothing: not the batches, not the metrics."""
    x, lengths = _arrays()
    y = np.cumsum(x, axis=1)[..., :1]
    past = np.arange(x.shape[1])[None, :] >= lengths[:, None]
    dirty_x, dirty_y = x.copy(), y.copy()
    dirty_x[past] = np.nan
    dirty_y[past] = 1e6
    np.savez(
        tmp_path / "clean.npz", x=np.where(past[..., None], 0, x), y=np.where(past[..., None], 0, y), lengths=lengths
    )
    np.savez(tmp_path / "dirty.npz", x=dirty_x, y=dirty_y, lengths=lengths)
    clean, dirty = (Data(path=str(tmp_path / f"{n}.npz")) for n in ("clean", "dirty"))
    for a, b in ((clean.split("test"), dirty.split("test")), (clean.train_batch(3, 8), dirty.train_batch(3, 8))):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.lengths, b.lengths)
        assert a.x.shape[1] == int(a.lengths.max())  # each batch padded to its longest sequence only


def test_token_ids_and_class_counts(tmp_path: Path) -> None:
    g = np.random.default_rng(1)
    ids = g.integers(0, 5, (30, 4))
    np.savez(tmp_path / "t.npz", x=ids, y=ids[:, -1])
    task = Data(path=str(tmp_path / "t.npz"))
    assert (task.needs.vocab, task.needs.output_size, task.needs.last) == (5, 5, True)
    wider = Data(path=str(tmp_path / "t.npz"), vocab=8, classes=6)
    assert (wider.needs.vocab, wider.needs.output_size) == (8, 6)
    with pytest.raises(DataError, match=r"classes=3, but an id of 4 occurs \(give 5 or more\)"):
        _ = Data(path=str(tmp_path / "t.npz"), classes=3).needs


def test_the_loss_overrides_what_the_dtype_says(tmp_path: Path) -> None:
    x, _ = _arrays()
    np.savez(tmp_path / "f.npz", x=x, y=np.round(np.abs(x[:, 0, 0])))  # whole numbers stored as floats
    assert Data(path=str(tmp_path / "f.npz")).kind == "values"
    assert Data(path=str(tmp_path / "f.npz"), criterion="cross_entropy").kind == "class"
    np.savez(tmp_path / "i.npz", x=x, y=np.arange(40))
    as_values = Data(path=str(tmp_path / "i.npz"), criterion="mse")
    assert as_values.kind == "values" and as_values.primary == "mse" and not as_values.higher_is_better
    np.savez(tmp_path / "h.npz", x=x, y=x[:, 0, 0])
    with pytest.raises(DataError, match=r"array `y`: expected whole numbers \(class ids\) for the loss cross_entropy"):
        _ = Data(path=str(tmp_path / "h.npz"), criterion="cross_entropy").kind


def test_jsonl_sequences_of_different_lengths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = np.random.default_rng(2)
    lines = []
    for _ in range(30):
        steps = int(g.integers(2, 7))
        x = g.normal(size=(steps, 2)).round(3)
        lines.append(json.dumps({"x": x.tolist(), "y": int(x[:, 0].sum() > 0)}))
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    task = Data(path=str(tmp_path / "d.jsonl"))
    assert task.kind == "class" and task.data.x.shape[2] == 2 and task.data.lengths is not None
    assert sorted(set(task.data.lengths.tolist())) == list(range(2, 7))
    spec = _spec(tmp_path, 2, 2, last=True)
    status, _, err = _run(
        ["train", str(spec), "--data", str(tmp_path / "d.jsonl"), *QUICK, "--out", str(tmp_path / "r")], capsys
    )
    assert status == 0, err
    (tmp_path / "bad.jsonl").write_text('{"x": [[1, 2]], "y": 0}\n{"x": [[1, 2]]}\n')
    with pytest.raises(
        DataError, match=r"bad.jsonl:2: expected an object \{\"x\": \[...\], \"y\": ...\}, got an object with keys 'x'"
    ):
        Data(path=str(tmp_path / "bad.jsonl")).check()


# ---- bad files -------------------------------------------------------------------------------------


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    x, lengths = _arrays(n=10)
    y = np.zeros(10, dtype=np.int64)
    nan = x.copy()
    nan[3, 1, 2] = np.nan
    cases = {
        "missing": ({"x": x}, "no array `y` (it holds `x`); the arrays are `x` (sequences), `y` (targets)"),
        "rank": ({"x": x[0], "y": y}, "array `x`: expected (N, T, S) floats (S values per step) or (N, T) whole"),
        "floats2d": ({"x": x[..., 0], "y": y}, "for one value per step give shape (10, 6, 1) (x[..., None])"),
        "dtype": ({"x": x.astype("U3"), "y": y}, "array `x`: expected (N, T, S) floats"),
        "lengths": (
            {"x": x, "y": y, "lengths": np.full(10, 7)},
            "array `lengths`: expected each length in [1, T] with T = 6 (x's second axis), got 7 at sequence 0",
        ),
        "lengthdtype": ({"x": x, "y": y, "lengths": lengths + 0.5}, "array `lengths`: expected (10,) whole numbers"),
        "nan": ({"x": nan, "y": y}, "array `x`: expected finite values, got NaN at sequence 3, step 1"),
        "ysize": ({"x": x, "y": y[:4]}, "array `y`: expected (10,) or (10, 6) whole numbers"),
        "negative": ({"x": x, "y": y - 1}, "array `y`: expected class ids >= 0, got -1 at sequence 0"),
    }
    out = {}
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        out[name] = (tmp_path / f"{name}.npz", message)
    (tmp_path / "objects.npz").write_bytes(b"")
    np.savez(tmp_path / "objects.npz", x=np.array([x[0], x[1, :3]], dtype=object), y=y[:2])
    out["objects"] = (tmp_path / "objects.npz", "an array holds Python objects")
    (tmp_path / "text.npz").write_text("not a zip")
    out["text"] = (tmp_path / "text.npz", "not a readable .npz file")
    (tmp_path / "d.csv").write_text("1,2\n")
    out["suffix"] = (tmp_path / "d.csv", "a data file is .npz (arrays x, y, lengths) or .jsonl")
    ok = '{"x": [[0.1, 0.2], [0.3, 0.4]], "y": 1}\n'
    jsonl = {  # each names its line (numpy's and the codec's own messages did not)
        "widths": (
            ok + '{"x": [[0.1, 0.2, 0.3]], "y": 0}\n',
            "widths.jsonl:2: `x` has steps of size 3, where line 1's",
        ),
        "ids": (ok + '{"x": [1, 2], "y": 0}\n', "ids.jsonl:2: `x` holds token ids (numbers), where line 1's has"),
        "ys": (ok + '{"x": [[0.1, 0.2]], "y": [0, 1, 1]}\n', "ys.jsonl:2: `y` is shaped [3], line 1's []"),
        "ragged": ('{"x": [[1, 2], [3]], "y": 1}\n', "ragged.jsonl:1: `x` is ragged"),
        "list": ("[1, 2, 3]\n", 'list.jsonl:1: expected an object {"x": [...], "y": ...}, got a list'),
        "words": ('{"x": [["a", "b"]], "y": 1}\n', "words.jsonl:1: `x` holds text; numbers only"),
        "latin1": (ok + '{"x": [[1, 2]], "y": 1, "n": "\xe9"}\n', "latin1.jsonl:2: not UTF-8 text (byte 0xe9)"),
    }
    for name, (text, message) in jsonl.items():
        (tmp_path / f"{name}.jsonl").write_bytes(text.encode("latin-1"))
        out[name] = (tmp_path / f"{name}.jsonl", message)
    return out


def test_a_jsonl_file_may_start_with_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "bom.jsonl").write_text('{"x": [[1, 2], [3, 4]], "y": 1}\n' * 3, encoding="utf-8-sig")
    assert Data(path=str(tmp_path / "bom.jsonl")).data.x.shape == (3, 2, 2)


def test_bad_files_are_one_message_naming_the_array_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, 3, 2, last=True)
    for name, (path, message) in _bad_files(tmp_path).items():
        for command in (["train", str(spec)], ["compare", str(spec), str(spec)]):
            out = tmp_path / f"run-{name}-{command[0]}"
            status, printed, err = _run([*command, "--data", str(path), *QUICK, "--out", str(out)], capsys)
            assert status == 1, name
            assert err.startswith(f"rnndsl {command[0]}: error: ") and message in err, (name, err)
            assert "Traceback" not in err and printed == "" and not out.exists(), name
    status, _, err = _run(["train", str(spec), "--data", str(tmp_path / "none.npz")], capsys)
    assert status == 1 and f"cannot read the data file {tmp_path / 'none.npz'}: No such file or directory" in err


def test_data_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, _ = _arrays(n=5)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(5) % 2)
    spec, data = _spec(tmp_path, 3, 2, last=True), str(tmp_path / "d.npz")
    for split in ("0.5,0.5", "0.8,0.1,0.2", "a,b,c", "1,0,0"):
        status, _, err = _run(["train", str(spec), "--data", data, "--split", split], capsys)
        assert status == 1 and "--split takes three fractions TRAIN,VALIDATION,TEST" in err and f"got `{split}`" in err
    status, _, err = _run(["train", str(spec), "--data", data, "--split", "0.9,0.05,0.05"], capsys)
    assert status == 1 and "5 sequences leave none for test with the split 0.9,0.05,0.05" in err
    status, _, err = _run(["train", str(spec), "--data", data, "--task", "digits"], capsys)
    assert status == 1 and "give --task NAME or --data FILE, not both" in err
    status, _, err = _run(["train", str(spec), "--task", "digits", "--loss", "mse"], capsys)
    assert status == 1 and "--loss and --split are for --data (or a task over arrays); task `digits` has its own" in err


def test_the_fit_check_names_the_spec_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, lengths = _arrays()
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, :, 0] > 0).astype(np.int64), lengths=lengths)
    spec = _spec(tmp_path, 4, 2, last=True)
    status, _, err = _run(["train", str(spec), "--data", str(tmp_path / "d.npz"), *QUICK], capsys)
    assert status == 1
    assert err.startswith(f"rnndsl train: error: network `Net` ({spec}) does not fit task `data (d.npz)`, which feeds")
    assert f"{spec}:2:" in err and "input `x` has size 4; the task gives 3 per step" in err
    assert f"{spec}:5:" in err and "output `y` is `last`; the task needs a value at every step" in err


# ---- checkpoints -----------------------------------------------------------------------------------


def test_a_data_run_resumes_and_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, lengths = _arrays()
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0, 0] > 0).astype(np.int64), lengths=lengths)
    spec, data = _spec(tmp_path, 3, 2, last=True), str(tmp_path / "d.npz")
    common = ["--batch", "8", "--eval-every", "3", "--quiet"]
    assert main(["train", str(spec), "--data", data, "--steps", "6", *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["train", str(spec), "--data", data, "--steps", "3", *common, "--out", str(tmp_path / "b")]) == 0
    saved = read_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert saved["task"]["name"] == "data" and saved["task"]["path"] == str(Path(data).resolve())
    assert saved["task"]["sha256"] == Data(path=data).sha256
    # the checkpoint knows its data: --resume alone goes on, with the same losses as the run never stopped
    assert main(["train", str(spec), "--resume", str(tmp_path / "b" / "checkpoint.pt"), "--steps", "6", "--quiet"]) == 0
    straight, resumed = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("a", "b"))
    assert resumed["history"]["loss"] == straight["history"]["loss"]
    net = rnndsl.load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    test = Data(path=data).split("test")
    logits = net(x=test.x, lengths=test.lengths).y
    assert float((logits.argmax(-1) == test.y).double().mean()) == pytest.approx(resumed["metrics"]["test"]["accuracy"])
    capsys.readouterr()
    # a moved file is found with --data; a file whose bytes changed is refused
    moved = tmp_path / "moved.npz"
    Path(data).rename(moved)
    status, _, err = _run(
        ["train", str(spec), "--resume", str(tmp_path / "b" / "checkpoint.pt"), "--steps", "7", "--quiet"], capsys
    )
    assert status == 1 and f"cannot read the data file {Path(data).resolve()}" in err
    assert "(moved since the run? give its new place with --data FILE)" in err
    ckpt = str(tmp_path / "b" / "checkpoint.pt")  # evaluate finds it so too
    status, _, err = _run(["evaluate", ckpt], capsys)
    assert status == 1 and "give its new place with --data FILE" in err
    status, out, _ = _run(["evaluate", ckpt, "--data", str(moved)], capsys)
    assert status == 0 and f"path={moved}" in out
    assert (
        main(
            [
                "train",
                str(spec),
                "--resume",
                str(tmp_path / "b" / "checkpoint.pt"),
                "--data",
                str(moved),
                "--steps",
                "7",
                "--quiet",
            ]
        )
        == 0
    )
    np.savez(moved, x=x, y=np.zeros(40, dtype=np.int64), lengths=lengths)
    status, _, err = _run(
        ["train", str(spec), "--resume", str(tmp_path / "b" / "checkpoint.pt"), "--data", str(moved), "--steps", "8"],
        capsys,
    )
    assert status == 1 and f"{moved} is not the data the run trained on (sha256 " in err


# ---- a task of one's own ---------------------------------------------------------------------------

PACKAGE = '''
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rnndsl.tasks import ArrayTask


@dataclass(frozen=True)
class Sine(ArrayTask):
    """Is the sine wave rising at the last step? `length` steps of (sin, cos) at a random phase."""

    name: ClassVar[str] = "sine"
    length: int = 8

    def arrays(self):
        phase = np.random.default_rng(self.seed).uniform(0, 2 * np.pi, 64)
        t = phase[:, None] + 0.5 * np.arange(self.length)[None, :]
        return {"x": np.stack([np.sin(t), np.cos(t)], -1), "y": (np.cos(t[:, -1]) > 0).astype(np.int64)}
'''


def _install(site: Path, entry: str) -> None:
    """A tiny installed distribution: its module and a dist-info whose entry_points.txt names the task."""
    site.mkdir(exist_ok=True)
    (site / "rnndsl_sine.py").write_text(textwrap.dedent(PACKAGE))
    info = site / "rnndsl_sine-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rnndsl-sine\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[rnndsl.tasks]\n{entry}\n")


def test_a_task_installed_under_the_entry_point_group_trains_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _install(tmp_path / "site", "sine = rnndsl_sine:Sine")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    from rnndsl.tasks import TASKS

    assert list(TASKS)[-1] == "sine" and issubclass(TASKS["sine"], ArrayTask)
    spec = _spec(tmp_path, 2, 2, last=True)
    status, out, err = _run(
        ["train", str(spec), "--task", "sine", "--task-arg", "length=5", *QUICK, "--out", str(tmp_path / "r")], capsys
    )
    assert status == 0, err
    assert "Net on sine: 4 steps" in out
    saved = read_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert saved["task"] == {
        "name": "sine",
        "criterion": "",
        "validation": 0.1,
        "test": 0.1,
        "seed": 0,
        "classes": 0,
        "vocab": 0,
        "length": 5,
    }
    assert main(["train", str(spec), "--resume", str(tmp_path / "r" / "checkpoint.pt"), "--steps", "6", "--quiet"]) == 0
    assert make_task("sine", length=3).data.x.shape == (64, 3, 2)
    status, _, err = _run(["train", str(spec), "--task", "sinus"], capsys)
    assert status == 1 and "no task `sinus`; the tasks are: digits, adding, copy, names, g2p, sine" in err


def test_a_broken_entry_point_is_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _install(tmp_path / "site", "wave = rnndsl_sine:Sine\nmissing = rnndsl_sine:Nothing")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = _spec(tmp_path, 2, 2, last=True)
    status, _, err = _run(["train", str(spec), "--task", "missing"], capsys)
    assert (
        status == 1
        and "task `missing` (entry point `rnndsl_sine:Nothing` of the `rnndsl.tasks` group) cannot be loaded: "
        "AttributeError"
        in err
    )
    status, _, err = _run(["train", str(spec), "--task", "wave"], capsys)
    assert status == 1 and "names class Sine, whose `name` is 'sine': the two must agree" in err


def test_the_data_files_place_and_hash_are_no_task_arguments() -> None:
    """--data sets the file and the run its hash: --task-arg neither lists nor takes them."""
    with pytest.raises(ValueError, match=r"task option `path` is set by --data FILE, not --task-arg"):
        parse_options("data", ["path=x.npz"])
    with pytest.raises(ValueError, match=r"KEY one of criterion, validation, test, seed, classes, vocab$"):
        parse_options("data", ["bogus=1"])
