"""The playground's server: takes HTTP requests on 127.0.0.1, gives the page, the checker's diagnostics, the
drawings, the examples and training runs as server-sent events. Starlette routes, uvicorn serves.

    GET  /                   the page (rnndsl/play/static/, shipped in the wheel: it needs no network)
    GET  /api/examples       the example specs' names; /api/examples/NAME one spec's text
    POST /api/check          {spec}: diagnostics (the messages `rnndsl check` prints) and each network's facts
    POST /api/draw           {spec, network, unroll}: the folded graph and the unrolled DAG as SVG
    POST /api/train          {spec, network, task, steps, batch, lr}: a run's events as text/event-stream;
                             closing the request (the page's Stop, or the page itself) stops the run

Safety: the server listens on 127.0.0.1 only; a body is JSON of at most MAX_BODY bytes and a spec at most
MAX_SPEC characters; a run is bounded (`runs.MAX_STEPS`, `runs.MAX_BATCH`) and one runs at a time. A
malformed request gets a 4xx with a message. Spec text reaches only the front end, which turns it into
data; the compiler's generated code holds none of it but sanitised names and numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import webbrowser
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rnndsl.draw import MAX_DRAW_STEPS, to_svg
from rnndsl.editor.analysis import Analysis, analyse
from rnndsl.frontend.sizes import used_with
from rnndsl.graphs.folded import folded, loops
from rnndsl.lang.errors import Diagnostic
from rnndsl.play import runs

__all__ = ["MAX_BODY", "MAX_SPEC", "app", "cmd_play", "examples_folder"]

MAX_SPEC = 20_000  # characters: the largest example is 3,358
MAX_BODY = 64_000  # bytes of one request's JSON
MAX_UNROLL = 8  # steps drawn unrolled on the page (rnndsl draw allows MAX_DRAW_STEPS)
HOST = "127.0.0.1"
STATIC = Path(__file__).resolve().parent / "static"


class RequestError(Exception):
    """A request the server refuses: its status and the message the page shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def examples_folder() -> Path:
    """The example specs: shipped in the wheel as rnndsl/examples, else the checkout's examples/."""
    packaged = Path(str(resources.files("rnndsl").joinpath("examples")))
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "examples"


async def _body(request: Request, fields: dict[str, type]) -> dict[str, Any]:
    """The request's JSON object, every field of the type given (a missing one is absent, not None)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise RequestError(413, f"the request is larger than {MAX_BODY:,} bytes")
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(400, f"the body must be JSON: {err}") from None
    except RecursionError:  # `[[[...` tens of thousands deep, within the size limit
        raise RequestError(400, "the body must be JSON of a few levels: it is nested too deeply") from None
    if not isinstance(data, dict):
        raise RequestError(400, "the body must be a JSON object")
    for key, value in data.items():
        want = fields.get(key)
        if want is None:
            raise RequestError(400, f"unknown field {key!r}; the fields are: {', '.join(fields)}")
        number = want is float and isinstance(value, int)
        ok = (isinstance(value, want) or number) and not isinstance(value, bool)
        if not ok and not (value is None and key == "network"):
            raise RequestError(400, f"field {key!r} must be {want.__name__}, not {type(value).__name__}")
    if not isinstance(data.get("spec"), str):
        raise RequestError(400, "field 'spec' (the spec's text) is required")
    if len(data["spec"]) > MAX_SPEC:
        raise RequestError(413, f"the spec is {len(data['spec']):,} characters; the playground takes {MAX_SPEC:,}")
    return data


def _diagnostic(d: Diagnostic) -> dict[str, Any]:
    span = d.span
    return {
        "severity": d.severity,
        "message": d.message,
        "hint": d.hint,
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line or span.line,
        "end_column": span.end_column if span.end_line else span.column + 1,
        "text": d.format(),
    }


def _facts(a: Analysis) -> dict[str, Any]:
    nets = [
        {
            "name": n.name,
            "parameters": n.parameter_count(),
            "nodes": len(n.nodes),
            "loops": [{"nodes": names, "delays": delays} for names, delays in loops(folded(n))],
            "inputs": [{"name": i.name, "kind": i.input_kind, "size": i.size} for i in n.inputs],
            "outputs": [{"name": o.name, "last": o.last} for o in n.outputs],
            "generates": bool(n.self_fed),
        }
        for n in a.networks.values()
    ]
    generic = used_with(a.program) if a.program is not None and a.ok else {}
    models = [{"name": m.name, "parameters": m.parameter_count()} for m in a.models.values()]
    return {"networks": nets, "models": models, "generic": sorted(generic)}


async def check(request: Request) -> Response:
    data = await _body(request, {"spec": str})
    a = analyse(data["spec"], "spec.rnn")
    return JSONResponse({"ok": a.ok, "diagnostics": [_diagnostic(d) for d in a.diagnostics], **_facts(a)})


_DRAWING = threading.Lock()  # matplotlib's figures are drawn one at a time


def _drawings(spec: str, network: str | None, unroll: int) -> dict[str, Any]:
    a = analyse(spec, "spec.rnn")
    if not a.ok:
        raise RequestError(422, "the spec does not check: " + "; ".join(d.message for d in a.diagnostics[:3]))
    names = list(a.networks)
    name = network if network is not None else (names[-1] if names else None)
    net = a.networks.get(name or "")
    if net is None:
        raise RequestError(422, f"no network {name!r} here; the networks are: {', '.join(names) or 'none'}")
    with _DRAWING:
        return {"network": net.name, "folded": to_svg(net), "unrolled": to_svg(net, unroll)}


async def draw(request: Request) -> Response:
    data = await _body(request, {"spec": str, "network": str, "unroll": int})
    unroll = data.get("unroll", 3)
    if not 1 <= unroll <= MAX_UNROLL:
        raise RequestError(400, f"unroll must be 1 to {MAX_UNROLL} steps here (rnndsl draw takes {MAX_DRAW_STEPS})")
    return JSONResponse(await asyncio.to_thread(_drawings, data["spec"], data.get("network"), unroll))


async def train(request: Request) -> Response:
    data = await _body(request, {"spec": str, "network": str, "task": str, "steps": int, "batch": int, "lr": float})
    given: dict[str, Any] = {k: float(v) if k == "lr" else v for k, v in data.items()}
    options = runs.Options(**given)
    problems = options.problems()
    if problems:
        raise RequestError(400, "; ".join(problems))
    slot: runs.Slot = request.app.state.slot
    stop = await asyncio.to_thread(slot.take, 2.0)
    if stop is None:
        raise RequestError(409, "a run is going already: stop it first (one run at a time)")
    return StreamingResponse(_events(request, options, stop, slot), media_type="text/event-stream")


async def _events(request: Request, options: runs.Options, stop: threading.Event, slot: runs.Slot) -> Any:
    """The run's events as server-sent events; the run stops as soon as the page goes away."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    def emit(kind: str, data: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, data))

    def work() -> None:
        try:
            runs.train(options, stop, emit)
        finally:
            slot.give_back()
            loop.call_soon_threadsafe(queue.put_nowait, ("end", {}))

    threading.Thread(target=work, name="rnndsl-play-run", daemon=True).start()
    try:
        while True:
            # asked before every event: uvicorn drops what is sent to a closed connection without a word
            if await request.is_disconnected():
                return
            try:
                kind, data = await asyncio.wait_for(queue.get(), 0.25)
            except asyncio.TimeoutError:
                yield ": still here\n\n"  # a comment line: keeps a quiet connection (loading torch) alive
                continue
            if kind == "end":
                return
            yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
    finally:
        stop.set()


async def example_list(request: Request) -> Response:
    root = examples_folder()
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.rnn"))
    return JSONResponse({"examples": names})


async def example(request: Request) -> Response:
    root = examples_folder()
    wanted = request.path_params["name"]
    known = {p.relative_to(root).as_posix(): p for p in root.rglob("*.rnn")}  # never a path built from the URL
    if wanted not in known:
        raise RequestError(404, f"no example {wanted!r}")
    return PlainTextResponse(known[wanted].read_text(encoding="utf-8"))


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def refused(request: Request, err: Exception) -> Response:
    assert isinstance(err, RequestError)
    return JSONResponse({"error": err.message}, status_code=err.status)


def app() -> Starlette:
    """The playground as an ASGI application (uvicorn serves it; tests call it through httpx too)."""
    routes = [
        Route("/", index),
        Route("/api/check", check, methods=["POST"]),
        Route("/api/draw", draw, methods=["POST"]),
        Route("/api/train", train, methods=["POST"]),
        Route("/api/examples", example_list),
        Route("/api/examples/{name:path}", example),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    site = Starlette(routes=routes, exception_handlers={RequestError: refused})
    site.state.slot = runs.Slot()
    return site


def cmd_play(args: argparse.Namespace) -> int:
    """`rnndsl play`: serve the page on 127.0.0.1 until Ctrl-C; open it unless --no-browser."""
    import uvicorn

    if not 0 <= args.port <= 65535:
        print(f"rnndsl play: error: --port must be 0 to 65535, not {args.port}", file=sys.stderr)
        return 1
    config = uvicorn.Config(app(), host=HOST, port=args.port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)

    def announce() -> None:  # once listening: the port is known only then when --port 0
        while not server.started:
            if server.should_exit:
                return
            threading.Event().wait(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://{HOST}:{port}/"
        print(f"rnndsl play: serving {url} (Ctrl-C stops it)", flush=True)
        if not args.no_browser:
            webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    # Ctrl-C: uvicorn has closed the server already; SystemExit: uvicorn could not start (it said why)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        server.run()
    if not server.started:
        print(
            f"rnndsl play: error: could not listen on {HOST}:{args.port} (--port 0 picks a free port)", file=sys.stderr
        )
        return 1
    return 0
