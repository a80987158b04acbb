"""`rnndsl play`, the server, spoken to over HTTP as the page does: the command is run as a subprocess on a
free port of 127.0.0.1, and each endpoint is asked with httpx. Diagnostics are the checker's messages;
drawings are SVG; a run streams its events, one at a time, and stops when its request goes away;
malformed or oversized requests get a 4xx with a message; spec text never runs as code."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import serving_playground

from rnndsl.editor.analysis import analyse
from rnndsl.play.server import MAX_BODY, MAX_SPEC, STATIC

ROOT = Path(__file__).resolve().parent.parent
ELMAN = """network DigitsElman {
    input  x: 8
    layer  h: 32 tanh <- x, h[t-1]
    layer  y: 10 <- h
    output y last
}
"""


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """The address of a playground started as a user starts it: `rnndsl play --port 0 --no-browser`."""
    yield from serving_playground()


def events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """The server-sent events of a streamed response, as (kind, data)."""
    kind = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, json.loads(line[6:])


def test_listens_on_the_loopback_address_only(url: str) -> None:
    port = int(url.rsplit(":", 1)[1].strip("/"))
    rows = (
        [r.split() for r in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        if Path("/proc/net/tcp").exists()
        else []
    )
    listening = [r[1] for r in rows if r[3] == "0A" and int(r[1].split(":")[1], 16) == port]
    if not rows:
        pytest.skip("no /proc/net/tcp here to read the listening address from")
    assert listening == [f"0100007F:{port:04X}"]  # 127.0.0.1, not 0.0.0.0


def test_the_page_and_its_assets_need_no_network(url: str) -> None:
    page = httpx.get(url)
    assert page.status_code == 200 and '<textarea id="spec"' in page.text
    for name in ("play.js", "play.css"):
        asset = httpx.get(url + "static/" + name)
        assert asset.status_code == 200 and asset.text == (STATIC / name).read_text()
    for path in STATIC.iterdir():  # no CDN, no remote font: every URL is the server's own
        assert not re.search(r"(src|href)=\"(https?:)?//", path.read_text()), path.name
        assert 'fetch("http' not in path.read_text() and "import(" not in path.read_text()


def test_check_gives_the_checkers_messages_and_each_networks_facts(url: str) -> None:
    broken = ELMAN.replace("<- h\n", "<- hh\n")
    answer = httpx.post(url + "api/check", json={"spec": broken}).json()
    assert answer["ok"] is False
    (d,) = answer["diagnostics"]
    (want,) = analyse(broken, "spec.rnn").diagnostics
    assert (d["message"], d["hint"], d["line"], d["column"]) == (want.message, want.hint, 4, 21)
    assert d["text"] == want.format() and d["text"].startswith("spec.rnn:4:21: error: unknown name `hh`")
    answer = httpx.post(url + "api/check", json={"spec": ELMAN}).json()
    assert answer["ok"] is True and answer["diagnostics"] == []
    (net,) = answer["networks"]
    assert net["name"] == "DigitsElman" and net["parameters"] == 32 * (8 + 32) + 32 + 10 * 32 + 10
    assert net["loops"] == [{"nodes": ["h"], "delays": [1]}]


def test_draw_gives_both_pictures_as_svg(url: str) -> None:
    answer = httpx.post(url + "api/draw", json={"spec": ELMAN, "unroll": 2}, timeout=60).json()
    assert answer["network"] == "DigitsElman"
    for key in ("folded", "unrolled"):
        assert "<svg" in answer[key] and "</svg>" in answer[key]
    assert answer["unrolled"].count("t=") >= 2 or len(answer["unrolled"]) > len(answer["folded"])


def test_examples_are_listed_and_served_and_nothing_else(url: str) -> None:
    names = httpx.get(url + "api/examples").json()["examples"]
    assert "jordan.rnn" in names and "tasks/names_gen.rnn" in names
    assert len(names) == len(list((ROOT / "examples").rglob("*.rnn")))
    assert (
        httpx.get(url + "api/examples/tasks/names_gen.rnn").text == (ROOT / "examples/tasks/names_gen.rnn").read_text()
    )
    for bad in ("../pyproject.toml", "..%2Fpyproject.toml", "nope.rnn", "%2Fetc%2Fpasswd"):
        answer = httpx.get(url + "api/examples/" + bad)
        assert answer.status_code == 404 and "[project]" not in answer.text


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("api/check", b"not json", 400, "the body must be JSON"),
        ("api/check", b"[1, 2]", 400, "a JSON object"),
        ("api/check", b"[" * 60000, 400, "nested too deeply"),  # a RecursionError in the parser: it was a 500
        ("api/check", b"{}", 400, "field 'spec'"),
        ("api/check", b'{"spec": 3}', 400, "must be str, not int"),
        ("api/check", b'{"spec": "x", "eval": "1"}', 400, "unknown field 'eval'"),
        ("api/check", json.dumps({"spec": "#" * (MAX_SPEC + 1)}).encode(), 413, "characters"),
        ("api/check", b" " * (MAX_BODY + 1), 413, "larger than"),
        ("api/draw", json.dumps({"spec": ELMAN, "unroll": 99}).encode(), 400, "unroll must be 1 to 8"),
        ("api/draw", json.dumps({"spec": "network N {"}).encode(), 422, "does not check"),
        ("api/draw", json.dumps({"spec": ELMAN, "network": "Other"}).encode(), 422, "no network 'Other'"),
        ("api/train", json.dumps({"spec": ELMAN, "steps": 501}).encode(), 400, "steps must be 1 to 500"),
        ("api/train", json.dumps({"spec": ELMAN, "batch": 0}).encode(), 400, "batch must be 1 to 64"),
        ("api/train", json.dumps({"spec": ELMAN, "lr": 0}).encode(), 400, "lr must be in (0, 1]"),
        ("api/train", json.dumps({"spec": ELMAN, "task": "g2p"}).encode(), 400, "task must be one of digits, names"),
        ("api/train", json.dumps({"spec": ELMAN, "steps": True}).encode(), 400, "must be int, not bool"),
    ],
)
def test_malformed_requests_get_a_4xx_with_a_message(
    url: str, path: str, body: bytes, status: int, message: str
) -> None:
    answer = httpx.post(url + path, content=body, headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"] and "Traceback" not in answer.text


def test_a_run_streams_its_steps_validation_and_end(url: str) -> None:
    body = {"spec": ELMAN, "task": "digits", "steps": 12, "batch": 16}
    with httpx.stream("POST", url + "api/train", json=body, timeout=120) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        seen = list(events(response))
    kinds = [k for k, _ in seen]
    assert kinds[0] == "start" and kinds[-2:] == ["validation", "done"] and kinds.count("step") == 12
    assert [d["step"] for k, d in seen if k == "step"] == list(range(1, 13))
    assert "accuracy" in seen[-2][1]["metrics"]


def test_a_generator_run_ends_with_samples(url: str) -> None:
    spec = (ROOT / "examples/tasks/names_gen.rnn").read_text()
    with httpx.stream(
        "POST", url + "api/train", json={"spec": spec, "task": "names", "steps": 3, "batch": 4}, timeout=120
    ) as r:
        seen = dict(events(r))
    assert seen["start"]["task"] == {"name": "names", "seed": 0, "by_sex": 1}
    assert [line.split(":")[0] for line in seen["samples"]["lines"]] == ["male", "female"]


def test_a_task_that_does_not_fit_is_an_error_event(url: str) -> None:
    spec = ELMAN.replace("input  x: 8", "input  x: 9")
    with httpx.stream("POST", url + "api/train", json={"spec": spec, "steps": 3}, timeout=120) as r:
        seen = dict(events(r))
    assert "input `x` has size 9; the task gives 8 per step" in seen["error"]["message"]


def test_one_run_at_a_time_and_a_closed_request_stops_its_run(url: str) -> None:
    spec = (ROOT / "examples/tasks/names_gen.rnn").read_text()
    long_run = {"spec": spec, "task": "names", "steps": 500, "batch": 64}  # about 10 s on one thread
    with httpx.Client(timeout=120) as client:
        with client.stream("POST", url + "api/train", json=long_run) as first:
            lines = first.iter_lines()  # kept open: leaving a loop over it early would close the request
            while next(lines) != "event: step":
                pass
            began = time.monotonic()
            second = client.post(url + "api/train", json={"spec": ELMAN, "steps": 2})
            assert second.status_code == 409 and "one run at a time" in second.json()["error"]
        # the first request is closed: its run stops at its next step, and the slot is free again
        third = client.post(url + "api/train", json={"spec": ELMAN, "steps": 2})
        assert third.status_code == 200 and "event: done" in third.text
        assert time.monotonic() - began < 8


def test_spec_text_never_runs_as_code(url: str, tmp_path: Path) -> None:
    sentinel = tmp_path / "ran"
    payload = f"__import__('os').system('touch {sentinel}')"
    hostile = [
        ELMAN.replace("output y last", f"output y last  # {payload}"),
        ELMAN.replace("layer  y: 10 <- h", f'layer  y: 10 <- h  # """; {payload}; """'),
        f"network N {{ input x: 8\n layer h: 4 <- {payload}\n output h }}",
        ELMAN.replace("h", "__import__"),
    ]
    for spec in hostile:
        httpx.post(url + "api/check", json={"spec": spec})
        httpx.post(url + "api/draw", json={"spec": spec}, timeout=60)
        with httpx.stream("POST", url + "api/train", json={"spec": spec, "steps": 2, "batch": 2}, timeout=120) as r:
            list(events(r)) if r.status_code == 200 else r.read()
    assert not sentinel.exists()
    refused = httpx.post(url + "api/check", json={"spec": hostile[3]}).json()
    assert "names may not start with '_'" in refused["diagnostics"][0]["message"]
