"""Editor latency: how long a keystroke waits for its diagnostics, on the largest example spec.

    python -m benchmarks.editor_latency            # both paths, 200 keystrokes each
    python -m benchmarks.editor_latency --keys 50

The keystrokes retype the spec's longest statement one character at a time (each one an edit the checker
sees, half of them a broken spec), as an editor sends them: through `rnndsl lsp` (a pygls client sends
didChange with the whole text and waits for publishDiagnostics) and through the playground's
POST /api/check (`rnndsl play`, over HTTP). Both servers run as the commands a user starts.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from lsprotocol import types as t
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parent.parent


def largest() -> Path:
    return max((ROOT / "examples").rglob("*.rnn"), key=lambda p: p.stat().st_size)


def keystrokes(text: str, count: int) -> list[str]:
    """The texts after each keystroke: the longest line emptied, then typed back character by character."""
    lines = text.split("\n")
    row = max(range(len(lines)), key=lambda i: len(lines[i].split("#")[0].rstrip()))
    line = lines[row].split("#")[0].rstrip()
    out = []
    for i in range(count):
        k = i % (len(line) + 1)
        out.append("\n".join([*lines[:row], line[:k], *lines[row + 1 :]]))
    return out


async def lsp_latency(texts: list[str]) -> list[float]:
    client = LanguageClient("bench", "1")
    arrived: asyncio.Queue[float] = asyncio.Queue()

    @client.feature(t.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def published(params: t.PublishDiagnosticsParams) -> None:
        arrived.put_nowait(time.perf_counter())

    await client.start_io(sys.executable, "-m", "rnndsl", "lsp")
    await client.initialize_async(t.InitializeParams(capabilities=t.ClientCapabilities(), process_id=None))
    client.initialized(t.InitializedParams())
    uri = "file:///bench/spec.rnn"
    client.text_document_did_open(t.DidOpenTextDocumentParams(t.TextDocumentItem(uri, "rnn", 1, texts[0])))
    await arrived.get()
    out = []
    for version, text in enumerate(texts, start=2):
        sent = time.perf_counter()
        change = t.TextDocumentContentChangeWholeDocument(text)
        params = t.DidChangeTextDocumentParams(t.VersionedTextDocumentIdentifier(version, uri), [change])
        client.text_document_did_change(params)
        out.append(await arrived.get() - sent)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return out


def http_latency(texts: list[str]) -> list[float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnndsl", "play", "--port", "0", "--no-browser"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        found = re.search(r"(http://\S+)", proc.stdout.readline())
        assert found
        out = []
        with httpx.Client(base_url=found.group(1)) as client:
            client.post("api/check", json={"spec": texts[0]})
            for text in texts:
                sent = time.perf_counter()
                client.post("api/check", json={"spec": text}).raise_for_status()
                out.append(time.perf_counter() - sent)
        return out
    finally:
        proc.terminate()
        proc.wait(10)


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[int(0.9 * (len(ms) - 1))]
    return (
        f"{name}: median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms, max {ms[-1]:.1f} ms ({len(ms)} keystrokes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=200, help="keystrokes per path (default 200)")
    args = parser.parse_args()
    path = largest()
    texts = keystrokes(path.read_text(), args.keys)
    text = path.read_text()
    print(f"{path.relative_to(ROOT)}: {len(text.encode()):,} bytes, {text.count(chr(10))} lines")
    print(summary("rnndsl lsp (didChange -> publishDiagnostics)", asyncio.run(lsp_latency(texts))))
    print(summary("rnndsl play (POST /api/check)", http_latency(texts)))


if __name__ == "__main__":
    main()
