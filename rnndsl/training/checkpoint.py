"""Checkpoints: takes a training run's state, gives a file written atomically, and reads it back.

A checkpoint holds the spec text and its sha256, the network's name, the rnndsl and torch versions, the
parameters, the optimizer state, the step, the RNG states (torch, numpy, python; CUDA when present),
the task's and the training's configuration, the history so far and the training time. It is written to
a temporary file in the same directory, flushed to disk, then renamed over the old one (`os.replace`),
so a crash leaves either the old complete checkpoint or the new one, never a partial file (a process killed
mid-write leaves its temporary file, which the next run in that directory removes). It holds only
tensors and plain Python values: it loads with `torch.load(weights_only=True)`, which runs no code.
"""

from __future__ import annotations

import difflib
import hashlib
import pickle
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from rnndsl._version import __version__
from rnndsl.frontend.load import read_spec
from rnndsl.runtime.build import compile as build
from rnndsl.runtime.files import atomic_write, remove_partial_writes
from rnndsl.runtime.model import CompiledModel
from rnndsl.runtime.network import CompiledNetwork

__all__ = [
    "FORMAT",
    "CheckpointError",
    "atomic_write",
    "capture_rng",
    "load_model",
    "read_checkpoint",
    "remove_partial_writes",
    "restore_rng",
    "save_checkpoint",
    "sha256",
    "spec_differences",
]

FORMAT = "rnndsl-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not belong to the spec or run it is used with."""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def capture_rng() -> dict[str, Any]:
    """The torch, numpy and python RNG states, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    saved = state["numpy"]
    np.random.set_state(
        (
            saved["kind"],
            saved["keys"].numpy().astype(np.uint32),
            saved["pos"],
            saved["has_gauss"],
            saved["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    *,
    spec: str,
    net: CompiledNetwork | CompiledModel,
    optimizer: torch.optim.Optimizer,
    step: int,
    task: dict[str, Any],
    train: dict[str, Any],
    history: dict[str, Any],
    elapsed: float,
) -> Path:
    """Write everything a resumed run needs to `path`, atomically."""
    state = {
        "format": FORMAT,
        "spec": spec,
        "spec_sha256": sha256(spec),
        "network": net.ir.name,
        "rnndsl_version": __version__,
        "torch_version": str(torch.__version__),
        "parameters": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "rng": capture_rng(),
        "task": task,
        "train": train,
        "history": history,
        "elapsed": elapsed,
    }
    return atomic_write(path, lambda file: torch.save(state, file))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of a checkpoint file, or a `CheckpointError` saying why it cannot be used."""
    if Path(path).suffix == ".rnn":
        raise CheckpointError(f"{path} is a spec, not a checkpoint: give the checkpoint.pt a training run wrote")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a folder: give the checkpoint.pt in it") from None
    except Exception as err:  # whatever torch's reader raises on bytes that are not a checkpoint (KeyError...)
        raise CheckpointError(f"{path} is not a readable checkpoint ({_reader_said(err)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an rnndsl checkpoint (expected format {FORMAT})")
    return state


def _reader_said(err: Exception) -> str:
    """What torch's reader said of a file that is not a checkpoint, in one line: for the weights-only unpickler its
    finding ("Unsupported operand 110"), not its advice to load the file unsafely."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and "WeightsUnpickler error:" in text:
        found = [line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines() if line.strip()]
        return found[0].split(". ")[0] if found else "torch's weights-only reader refused it"  # not its advice
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def spec_differences(state: dict[str, Any], spec: str, net: CompiledNetwork | CompiledModel) -> list[str]:
    """What differs between the spec and network a checkpoint was saved from and these; [] when they agree."""
    out = []
    if state["network"] != net.ir.name:
        out.append(f"network: `{state['network']}` in the checkpoint, `{net.ir.name}` here")
    if state["spec_sha256"] != sha256(spec):
        out.append(
            f"spec sha256: {state['spec_sha256'][:12]} in the checkpoint, {sha256(spec)[:12]} here; "
            + _first_line_difference(state["spec"], spec)
        )
    saved = {k: tuple(v.shape) for k, v in state["parameters"].items()}
    here = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    out += _listed("parameters only in the checkpoint", [f"{k} {saved[k]}" for k in saved if k not in here])
    out += _listed("parameters only here", [f"{k} {here[k]}" for k in here if k not in saved])
    out += _listed(
        "parameters of another shape",
        [f"{k}: {saved[k]} in the checkpoint, {here[k]} here" for k in saved if k in here and saved[k] != here[k]],
    )
    return out


def _first_line_difference(old: str, new: str) -> str:
    for tag, i1, _, j1, _ in difflib.SequenceMatcher(None, old.splitlines(), new.splitlines()).get_opcodes():
        if tag != "equal":
            before = old.splitlines()[i1] if i1 < len(old.splitlines()) else "(end of file)"
            after = new.splitlines()[j1] if j1 < len(new.splitlines()) else "(end of file)"
            return (
                f"first difference at line {j1 + 1}:\n      checkpoint: {before.strip()}\n      here:       "
                f"{after.strip()}"
            )
    return "the lines are the same (line endings or trailing whitespace differ)"


def _listed(title: str, items: list[str], limit: int = 8) -> list[str]:
    if not items:
        return []
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return [f"{title}: {'; '.join(items[:limit])}{more}"]


def load_model(
    path: str | Path, spec: str | Path | None = None, network: str | None = None
) -> CompiledNetwork | CompiledModel:
    """The trained network (or model) of a checkpoint, in eval mode; compiled from the checkpoint's own spec
    text, or from `spec`, which must then be the same spec.

    >>> net = load_model("runs/digits_lstm-digits/checkpoint.pt")  # doctest: +SKIP
    """
    state = read_checkpoint(path)
    text = state["spec"] if spec is None else read_spec(spec)[0]
    net = build(text, network or (state["network"] if spec is None else None))
    problems = spec_differences(state, text, net)
    if problems:
        raise CheckpointError(refusal(path, problems))
    net.load_state_dict(state["parameters"])
    return net.eval()


def refusal(path: str | Path, problems: list[str]) -> str:
    return f"checkpoint {path} was saved from another spec, so it is not loaded:\n" + "\n".join(
        f"  - {p}" for p in problems
    )
