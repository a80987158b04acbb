"""Report: takes the benchmark's results (a JSON-ready dict), gives the targets and docs/performance.md.

Ratios are rnndsl's time over a baseline's: below 1.0 means rnndsl is faster. "Best hand-optimised"
is the faster, per mode, of the eager and the TorchScript hand-optimised loops.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["BASELINES", "markdown", "ratio", "targets"]

BASELINES = (
    "torch.nn",
    "plain loop",
    "hand-optimised",
    "hand-optimised TorchScript",
    "torch.compile",
    "rnndsl generated loop",
)
MODES = {"forward": "fwd", "train": "fwd+bwd"}
GENERATED = BASELINES[-1]  # the same spec on generated torch ops: what the kernels (linear scan, C steps) replace
_HAND = ("hand-optimised", "hand-optimised TorchScript")


def _ms(row: dict, impl: str, mode: str) -> float | None:
    if impl == "best hand-optimised":
        times = [t for h in _HAND if (t := _ms(row, h, mode)) is not None]
        return min(times) if times else None
    got = row["impls"].get(impl)
    return None if got is None else got.get(f"{mode}_ms")


def ratio(row: dict, baseline: str, mode: str) -> float | None:
    """rnndsl's time over the baseline's for one case row, or None where the baseline did not run."""
    ours, theirs = _ms(row, "rnndsl", mode), _ms(row, baseline, mode)
    return None if ours is None or theirs is None else ours / theirs


# ---- targets ------------------------------------------------------------------------------------

# Why a target can fail and what would close it: what the generated code and the kernels were seen to
# do (docs/performance.md repeats it under the target when the measurement misses).
REASONS = {
    "cells": (
        "At the step size (8 x 1 x 64 -> 128: one step a call, as streaming and beam search call) a fused "
        "cell on a CPU runs torch's cell function (`torch.lstm_cell`, `gru_cell`, `rnn_tanh_cell`, what "
        "nn.LSTMCell runs), while nn.LSTM and nn.GRU run their sequence kernels, whose oneDNN set-up one "
        "step does not pay back (`kernels._one_cell_pays`; the LSTM without autograd only where batch x "
        "hidden <= 2048; in-process A/B at 8 x 1, 2 threads: LSTM specs 0.75-0.88x no_grad and 0.52-0.77x "
        "forward+backward, GRU specs 0.88-0.96x and 0.84-0.98x). A call given only its inputs and perhaps a "
        "state skips the input checks where they match the last such call's types, shapes, dtypes and "
        "devices (`validate.Signature`; token ids' range still checked): in-process A/B at 8 x 1, 1 thread, "
        "no_grad 0.86-1.01x, with a state 0.80-1.02x (eight benchmark specs); streaming 100 calls of one step "
        "at batch 1, 0.82-0.96x (six examples, 1 and 2 threads); beam search on names_gen 0.89-0.91x. In this "
        "run, at the step size against torch.nn: LSTM specs 0.71-0.78 forward and 0.86-0.99 forward+backward, "
        "Elman 0.96-1.06 and 0.90-1.02, GRU 0.98-1.11 and 1.34-1.50 (the last run: GRU 1.16-1.90 forward). "
        "What is left: (1) the GRU while autograd records: the gates' weights joined with `cat` at each call "
        "(four per cell, with their backward, and ten parameters' gradients accumulated where nn.GRU has "
        "four). Measured alone (`torch.gru_cell`, 8 x 1 x 64 -> 128, 1 thread, forward+backward, in one "
        "process): 694 µs with the weights joined from the ten parameters, 566 µs on four ready weights, "
        "582 µs for `torch.gru` on them; passing the laid-out buffer through a Python autograd node instead "
        "measured 1.03-1.09x of the `cat`s (an earlier session), so the `cat`s stay. This is the price of "
        "the spec's per-gate parameters: closing it needs the optimiser to see one laid-out parameter per "
        "cell (a change to what `parameters()` and the state_dict hold). (2) Python around the kernel: "
        "timed inside calls (Elman, 8 x 1, no_grad, 1 thread), `forward` took 117 µs of which the generated "
        "function 86, the signature check 5, the tracer check 2.6, start values 4.6, the parameter table 3, "
        "and about 15 the rest (the choice of variant, `State` and `Outputs`). On CUDA the laid-out buffer "
        "goes through that autograd node, so cuDNN takes it without repacking (`aten::_cudnn_rnn` repacked "
        "separate weights at ~290 µs of CPU a call against ~56 µs for nn.LSTM, an H200 in an earlier "
        "session); not measured on a GPU yet (`bash .ci/gpu-check`). At the three other sizes LSTM and GRU "
        "cells run on the same oneDNN kernels as torch.nn and the misses move between runs on this 2-core "
        "virtual machine (two runs of one comparison differ by 10-25%: the bidirectional GRU's long forward "
        "is 1.38 here and 1.03 in the last run). One `torch.lstm` call for a bidirectional pair measured no "
        "faster than two on this CPU (1.00x forward, 1.16x forward+backward at 64 x 100 x 128 -> 32), so it "
        "is not built."
    ),
    "plain": (
        "Custom loops run their elementwise work, forward and backward, as generated C between the matrix "
        "products (`rnndsl/backend/native_step.py`; the column `rnndsl generated loop` is the same spec on "
        "torch's ops), and a loop with no product in its step (IndRNN, QRNN, minGRU) as one C call a "
        "direction; their value buffers are kept between calls (`kernels.Workspace`). At 512 hidden the "
        "products are about half of the plain loop's time (products alone over the plain loop 0.44, 0.51 and "
        "0.49 for the layer-norm LSTM, peephole LSTM and IndRNN, `python -m benchmarks.floor --size "
        "standard`, an earlier session), which leaves everything else about 0.25-0.3 of it. The misses move "
        "with this machine's run-to-run variation, mostly the plain loop's own: here the peephole LSTM misses "
        "at 0.79 (0.75 in the last run), the layer-norm LSTM at 0.78 (0.86) and skip-2 at 0.76 (0.63), with "
        "Jordan at 0.75 (0.70); the plain loops' own forward+backward times moved by 0.56-1.03x between "
        "the runs (skip-2's 489 ms there, 273 here). What is above the products: the C on one "
        "thread (the layer-norm LSTM normalises five rows a step), the per-step product dispatch, and the "
        "backward's own fresh buffers (the gradients it returns, which autograd keeps)."
    ),
    "hand": (
        "At the step size (one step a call) a custom spec runs torch's loop (the plain variant: a native "
        "loop's setup and a generated backward do not pay off over one step): 1.24-2.26x the hand loops "
        "forward and 0.99-1.88x forward+backward in this run, against 1.8-3.3x and 1.1-1.9x in the last "
        "(the kept input checks of the standard cells above). Two things are left, measured at 8 x 1 x 64 "
        "-> 128, no_grad, 1 thread, in one process: the call's Python (40-75 µs a call around the generated "
        "function), and the generated function itself against the hand loop: peephole LSTM 402 against 274 "
        "µs, Jordan 142 / 119, top-down 177 / 146, skip-2 129 / 85, layer-norm LSTM 565 / 313, QRNN 348 / "
        "219. At one step every op counts (5-25 µs each here): rnndsl joins the products of layers whose "
        "loop-reading sources are the same (the peephole's i and f read h[t-1] and c[t-1]; g reads h[t-1]; o "
        "reads h[t-1] and c), so the peephole LSTM makes three input products and six recurrent ones a step "
        "where the hand loop makes one and three, joining every gate's h[t-1] product. Closing it needs "
        "products grouped by source across layers (the plan, both loop writers and the C steps). At the "
        "three other sizes the misses are a few percent and move between runs (QRNN 1.12 / 1.03 at the "
        "standard size in the last run; skip-2 forward 1.13 small here). The hand QRNN computes its three "
        "gates over both of their sources, `x_t` and `x_t-1`, as one product over `cat([x_t, x_t-1])`; "
        "rnndsl makes one product per gate and source. Joined products measured alone are faster (at 16 x "
        "1000 x 64 -> 128, 22.5 against 16.0 ms), but with each gate's activation on its columns of the "
        "joined result (strided) the joined stage measured slower, forward: per source joined 1.12x, 1.84x "
        "and 1.26x of rnndsl's stage at 32 hidden, the long size and 512; the fully joined product 1.32x, "
        "1.45x, 1.07x (an earlier session, 2 threads, in one process). Not built."
    ),
    "linear": (
        "The target counts the whole spec, and at T = 1000 (B = 16, H = 128) the specs' matrix products "
        "alone take 41 ms (QRNN) and 54 ms (minGRU) forward+backward on this machine (`python -m "
        "benchmarks.floor --size long --case qrnn --case mingru`, an earlier session). Five times faster "
        "than the generated loop would be about 35 and 58 ms: below what QRNN's products alone cost, and "
        "about minGRU's, whatever runs the recurrence. The recurrences run whole in C (one call a direction, "
        "`python -m benchmarks.native_ab whole`). This session built and measured the gates' activations "
        "inside that C run (each gate's product hoisted, its sigmoid or tanh and their derivatives in the "
        "loop's pass): forward 0.93-1.03x, forward+backward 0.96-1.13x of the batched activations (QRNN and "
        "minGRU, three sizes, in one process): no gain, not kept. The target needs fewer or faster products "
        "than the spec has on this CPU."
    ),
    "compile": (
        "Code generation itself (`generate`, timed directly on a fresh module) takes 0.8-4.4 ms for every "
        "example at both T. A miss here comes from the subtraction: the first call of a fresh module minus "
        "its next call, at 10,000 steps, where one module's calls vary by more than the target: seven fresh "
        "peephole-LSTM modules right after this run, four calls each at B = 1, took 158-424 ms a call, the "
        "first of each 178-425 (the same with Python's garbage collector off: 180-310; an earlier session). "
        "Which spec misses moves between runs: gru2.rnn here at 60 ms (its calls at 10,000 steps take about "
        "740 ms), the peephole LSTM at 95 ms in the last run and 40 ms here, stacked.rnn at 176 ms the run "
        "before. rnndsl's compilation does not depend on T (the generated code loops over time). "
        "A loop's C steps are built once per machine at their first call and cached by hash (here the "
        "throwaway warm-up module builds them; see their first build below)."
    ),
    "memory": (
        "Against nn.LSTM, a training call on a CPU keeps the joined gate weights of the call (and their "
        "gradients) besides the parameters (the buffer the parameters are views of goes to the kernel as it "
        "is only without autograd, or on CUDA; see the first target), and returns the state beside the "
        "output."
    ),
}


def _cell_rows(data: dict) -> Iterator[dict]:
    return (r for r in data["cases"] if not r["custom"])


def _custom_rows(data: dict) -> Iterator[dict]:
    return (r for r in data["cases"] if r["custom"])


def _worst(rows: Iterator[dict], baseline: str, modes: tuple[str, ...]) -> list[tuple[float, str]]:
    out = []
    for r in rows:
        for mode in modes:
            x = ratio(r, baseline, mode)
            if x is not None:
                out.append((x, f"{r['case']} {r['size']} {MODES[mode]}"))
    return sorted(out, reverse=True)


def _ratio_target(name: str, key: str, items: list[tuple[float, str]], bound: float, what: str) -> dict:
    if not items:
        return {"target": name, "key": key, "met": None, "measured": f"not measured: {what} in this run", "misses": []}
    misses = [f"{where}: {x:.2f}" for x, where in items if x > bound]
    worst, where = items[0]
    return {"target": name, "key": key, "met": not misses, "measured": f"worst {worst:.2f} ({where})", "misses": misses}


def targets(data: dict) -> list[dict]:
    """Each target: its text, met (True/False, None when not measured), the measured figure, misses."""
    both = ("forward", "train")
    out = [
        _ratio_target(
            "Standard cells ≤ 1.05× torch.nn, fwd and fwd+bwd, every size",
            "cells",
            _worst(_cell_rows(data), "torch.nn", both),
            1.05,
            "no standard cell",
        ),
        _ratio_target(
            "Custom topologies ≤ 0.75× the plain loop, fwd+bwd, standard size",
            "plain",
            _worst((r for r in _custom_rows(data) if r["size"] == "standard"), "plain loop", ("train",)),
            0.75,
            "no custom topology at the standard size",
        ),
        _ratio_target(
            "Custom topologies ≤ 1.0× the best hand-optimised loop, fwd and fwd+bwd, every size",
            "hand",
            _worst(_custom_rows(data), "best hand-optimised", both),
            1.0,
            "no custom topology",
        ),
        _ratio_target(
            "Linear recurrences (QRNN, minGRU) at T = 1000: fwd+bwd ≥ 5× faster than the generated per-step loop",
            "linear",
            _worst((r for r in data["cases"] if r["size"] == "long" and r.get("linear")), GENERATED, ("train",)),
            0.2,
            "no linear recurrence at the long size",
        ),
        _compile_target(data.get("spec_compile", [])),
        _memory_target(data.get("memory")),
    ]
    return out


def _compile_target(rows: list[dict]) -> dict:
    name = "Compile time (spec text to module + first call) < 50 ms for every example, the same at every T"
    if not rows:
        return {"target": name, "key": "compile", "met": None, "measured": "not measured", "misses": []}
    worst = max(rows, key=lambda r: r["compile_ms"])
    by_spec: dict[str, list[float]] = {}
    for r in rows:
        by_spec.setdefault(r["spec"], []).append(r["compile_ms"])
    spread = max(by_spec.items(), key=lambda kv: max(kv[1]) - min(kv[1]))
    gap = max(spread[1]) - min(spread[1])
    misses = [f"{r['spec']} T={r['steps']}: {r['compile_ms']:.1f} ms" for r in rows if r["compile_ms"] >= 50]
    if gap > max(10.0, 0.2 * min(spread[1])):
        misses.append(f"{spread[0]}: {gap:.1f} ms apart between T values")
    return {
        "target": name,
        "key": "compile",
        "met": not misses,
        "measured": f"worst {worst['compile_ms']:.1f} ms ({worst['spec']}, T={worst['steps']}); largest gap "
        f"between T values {gap:.1f} ms ({spread[0]})",
        "misses": misses,
    }


def _memory_target(memory: dict | None) -> dict:
    name = "Training-step peak memory of the LSTM spec ≤ 1.3× nn.LSTM, standard size"
    peaks = {r["impl"]: r["peak_bytes"] for r in (memory or {}).get("rows", [])}
    if not peaks.get("torch.nn") or peaks.get("rnndsl") is None:
        return {"target": name, "key": "memory", "met": None, "measured": "not measured", "misses": []}
    x = peaks["rnndsl"] / peaks["torch.nn"]
    size = memory["size"] if memory else ""
    measured = f"{x:.2f}× ({peaks['rnndsl'] / 2**20:.0f} MiB vs {peaks['torch.nn'] / 2**20:.0f} MiB, size {size})"
    if size != "standard":
        return {
            "target": name,
            "key": "memory",
            "met": None,
            "measured": measured + ": not the target's size",
            "misses": [],
        }
    return {
        "target": name,
        "key": "memory",
        "met": x <= 1.3,
        "measured": measured,
        "misses": [] if x <= 1.3 else [f"{x:.2f}×"],
    }


# ---- markdown -----------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _fmt_ms(x: float | None) -> str:
    """Milliseconds to a tenth, below 1 ms to a hundredth (the step size's calls)."""
    return _fmt(x, 2 if x is not None and x < 1 else 1)


def _pair(row: dict, baseline: str) -> str:
    f, t = ratio(row, baseline, "forward"), ratio(row, baseline, "train")
    return "–" if f is None and t is None else f"{_fmt(f)} / {_fmt(t)}"


def _ratio_table(data: dict, size: str) -> list[str]:
    rows = [r for r in data["cases"] if r["size"] == size]
    head = ["case", "rnndsl fwd ms", "rnndsl fwd+bwd ms", *(f"vs {b}" for b in BASELINES)]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            r["case"] + (" (custom)" if r["custom"] else ""),
            _fmt_ms(_ms(r, "rnndsl", "forward")),
            _fmt_ms(_ms(r, "rnndsl", "train")),
            *(_pair(r, b) for b in BASELINES),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _times_table(data: dict, size: str) -> list[str]:
    rows = [r for r in data["cases"] if r["size"] == size]
    impls = ("rnndsl", *BASELINES)
    out = ["| case | " + " | ".join(impls) + " |", "|" + "---|" * (len(impls) + 1)]
    for r in rows:
        cells = [
            f"{_fmt_ms(_ms(r, i, 'forward'))} / {_fmt_ms(_ms(r, i, 'train'))}" if i in r["impls"] else "–"
            for i in impls
        ]
        out.append(f"| {r['case']} | " + " | ".join(cells) + " |")
    return out


def _targets_section(data: dict) -> list[str]:
    out = ["## Targets", "", "| target | measured | status |", "|---|---|---|"]
    status = {True: "met", False: "**not met**", None: "not measured"}
    for t in data["targets"]:
        out.append(f"| {t['target']} | {t['measured']} | {status[t['met']]} |")
    missed = [t for t in data["targets"] if t["met"] is False]
    if missed:
        out += ["", "### Targets not met: why, and what would close them", ""]
        for t in missed:
            more = len(t["misses"]) - 12
            shown = ", ".join(t["misses"][:12]) + (f" and {more} more" if more > 0 else "")
            out += [f"- **{t['target']}**: missed by {shown}.", "", f"  {REASONS[t['key']]}", ""]
    return out


def _compile_sections(data: dict) -> list[str]:
    out = ["## torch.compile of the plain loop: compile times", ""]
    rows = [r for r in data["cases"] if r.get("torch_compile")]
    s = data["settings"]
    out.append(
        f"Each graph (training and forward apart) time-boxed to {s['compile_budget_s']:.0f} s, torch's "
        "compile caches off (a cold compile, as a user's first run). " + s["compile_scope_note"]
    )
    if rows:
        out += ["", "| case | size | training graph s | forward graph s | note |", "|---|---|---|---|---|"]
        for r in rows:
            c = r["torch_compile"]
            out.append(
                f"| {r['case']} | {r['size']} | {_fmt(c['train_s'], 1)} | {_fmt(c['forward_s'], 1)} "
                f"| {c['note'] or ''} |"
            )
    return out


def _spec_compile_section(data: dict) -> list[str]:
    rows = data.get("spec_compile") or []
    out = ["## Compile time of the example specs", ""]
    if not rows:
        return [*out, "Not measured in this run."]
    out += [
        "`compile` = `rnndsl.compile(text)` (build) + the first call − the same module's next call of the "
        "same input: the one-off cost, the median over fresh modules of each module's own pair of calls. "
        "`generate` is code generation and `exec` alone, timed directly (it cannot depend on T). Batch 1, "
        "no_grad; torch's own first-time cost at each shape (oneDNN/cuDNN set-up, paid by nn.LSTM too) is "
        "taken by a throwaway module first and shown apart.",
        "",
        "| spec | T | build ms | first call ms | next call ms | **compile ms** | generate ms | torch warm-up ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['spec']} | {r['steps']} | {r['build_ms']:.1f} | {r['first_call_ms']:.1f} | "
            f"{r['call_ms']:.1f} | **{r['compile_ms']:.1f}** | {_fmt(r.get('generate_ms'), 1)} | "
            f"{r['torch_warm_up_ms']:.1f} |"
        )
    cold = data.get("cold_start")
    if cold:
        out += [
            "",
            f"Cold start in a fresh process ({cold['spec']}): import torch {cold['import_torch_ms']:.0f} ms, "
            f"import rnndsl {cold['import_rnndsl_ms']:.0f} ms, first compile (builds the LALR parser) "
            f"{cold['first_compile_ms']:.0f} ms, first call (10 steps) {cold['first_call_ms']:.0f} ms.",
        ]
    return out


def _memory_section(data: dict) -> list[str]:
    mem = data.get("memory")
    out = ["## Training-step memory (LSTM spec)", ""]
    if not mem:
        return [*out, "Not measured in this run."]
    rows = mem["rows"]
    base = next((r["peak_bytes"] for r in rows if r["impl"] == "torch.nn"), None)
    out += [
        f"Size {mem['size']}. Method: {mem['method']}",
        "",
        "| implementation | peak MiB | vs torch.nn |",
        "|---|---|---|",
    ]
    for r in rows:
        peak = r["peak_bytes"]
        rel = _fmt(peak / base) if peak is not None and base else "–"
        out.append(f"| {r['impl']} | {_fmt(None if peak is None else peak / 2**20, 1)} | {rel} |")
    return out


def markdown(data: dict) -> str:
    """docs/performance.md for one run."""
    env, s = data["environment"], data["settings"]
    sizes = data["settings"]["sizes"]
    out = [
        "# Performance",
        "",
        f"Written by `{env['command']}` on {env['date']} (commit {env['commit']}); the run took "
        f"{data['elapsed_s'] / 60:.1f} min.",
        "",
        f"Machine: {env['cpu']} ({env['cpu_capability']}), {env['cpus']} CPUs; torch threads: {s['threads']}; "
        f"torch {env['torch']}; "
        f"Python {env['python']}; device {env['device']}.",
        "",
        "**Ratios are rnndsl's time divided by the baseline's: below 1.0 means rnndsl is faster.** Each "
        "cell reads `forward / forward+backward`.",
        "",
        *_targets_section(data),
        "",
    ]
    for size in sizes:
        b = data["settings"]["size_shapes"][size]
        out += [
            f"## Time ratios, {size}: batch {b[0]}, {b[1]} step{'s' * (b[1] != 1)}, {b[2]} in, {b[3]} hidden",
            "",
            *_ratio_table(data, size),
            "",
        ]
    out += ["## Median times (ms, forward / forward+backward)", ""]
    for size in sizes:
        out += [f"### {size}", "", *_times_table(data, size), ""]
    out += [
        *_compile_sections(data),
        "",
        *_spec_compile_section(data),
        "",
        *_memory_section(data),
        "",
        *_build_sections(data),
        *_method(data),
        "",
    ]
    return "\n".join(out)


# The native kernels' first builds: the key in the data, the section's title, its text around the seconds
BUILDS = {
    "linear_kernel_build_s": (
        "The linear-scan kernel's first build",
        "The C kernel of the linear scan (`rnndsl/backend/native.py`; loops linear in their past with "
        '`fuse_cells={{"linear"}}`: on a CPU the default runs them whole as C steps) was built from an empty '
        "cache in {:.2f} s (the system's C compiler; cached by source hash, then loaded in milliseconds).",
    ),
    "step_kernel_build_s": (
        "A loop's C steps: their first build",
        "The C that runs a custom loop's elementwise work (`rnndsl/backend/native_step.py`) is built at the loop's "
        "first call: for the peephole LSTM, {:.2f} s from an empty cache (a fresh module's first call, less a "
        "second fresh module's, which loads the built library). Cached by source hash.",
    ),
}


def _build_sections(data: dict) -> list[str]:
    out: list[str] = []
    for key, (title, text) in BUILDS.items():
        if data.get(key) is not None:
            out += [f"## {title}", "", text.format(data[key]) + " The times above are with it built.", ""]
    return out


def _method(data: dict) -> list[str]:
    s = data["settings"]
    return [
        "## Method",
        "",
        f"- One process, torch threads fixed at {s['threads']} (`torch.set_num_threads`), float32"
        + (", TF32 off (cuDNN and cuBLAS compute in full float32)" if s["device"].startswith("cuda") else "")
        + ".",
        f"- Each implementation runs once per mode before timing (TorchScript twice: its profiling executor "
        f"optimises on the second call); then the implementations take turns, one sample each per round, "
        f"{s['repeat']} samples "
        f"each, fewer (never under {s['min_repeat']}) where one run takes over 1/{s['repeat']} of "
        f"{s['budget_s']:.0f} s. The median is reported. Samples are bracketed by device synchronisation; the "
        "garbage collector is off while a sample runs. A call shorter than 5 ms is sampled as a run of "
        "consecutive calls lasting about 5 ms, divided by their number (as a stream of one-step calls runs).",
        "- forward: under `torch.no_grad()`. forward+backward: gradients cleared (`grad = None`), forward, then "
        "`backward` of a fixed random output gradient. The input does not require grad (it is data).",
        "- Before timing, every implementation's output is checked against rnndsl's "
        f"(max abs difference ≤ {s['atol']}); the differences are in docs/performance.json.",
        "- **rnndsl**: `rnndsl.compile(spec)`, called as a user would (`net(x).h`), input checks included. "
        "LSTM and GRU cells run on torch's fused kernels; Elman cells (on a CPU) and custom topologies run the "
        "generated loop, and in forward+backward its generated backward.",
        "- **torch.nn**: `nn.RNN` / `nn.LSTM` / `nn.GRU` (`num_layers=2` or `bidirectional=True` for those "
        "cases) with the spec's weights copied in; standard cells only.",
        "- **plain loop** (benchmarks/loops.py `plain_*`): `x[:, t]` each step, one `F.linear` per layer source per "
        "step on the spec's own parameters (layer norms as `F.layer_norm` with their gain and bias, as "
        "`nn.LayerNorm`), `torch.stack` at the end.",
        "- **hand-optimised** (`fast_*`): input projections of all gates for all steps in one matmul before the "
        "loop; steps by `unbind`; recurrent matmuls of all gates fused into one `addmm` a step (peephole: 3 a "
        "step, the fewest possible; top-down and skip-2: the delayed sources joined with `torch.cat` into one "
        "matmul per layer); one activation call per gate group (layer-norm LSTM: one `layer_norm` over the four "
        "gates, their gains and biases in one `addcmul`; IndRNN: layer by layer, one `addcmul` and one relu a "
        "step); own fused weight copies. "
        "**hand-optimised TorchScript**: the same functions under `torch.jit.script`.",
        "- **torch.compile**: `torch.compile` (inductor, default mode) of the plain loop; see above for where it "
        "ran and its compile times.",
        "",
        "## Reproduce",
        "",
        "```",
        "python -m benchmarks.bench                       # CPU, all sizes; writes docs/performance.{md,json}",
        "python -m benchmarks.bench --device cuda --out docs/performance_cuda",
        "python -m benchmarks.bench --size small --case jordan --out -   # one case, printed only",
        "```",
        "",
        "On a GPU machine, `bash .ci/gpu-check` runs the test suite and the CUDA benchmark. Where `lark` is not "
        "installed there, put its wheel in `.whl/` (e.g. `pip download lark -d .whl`); the script installs it "
        "from there.",
    ]
