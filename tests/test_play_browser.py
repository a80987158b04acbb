"""The playground in a real browser: Debian's Chromium, headless, driven by Playwright. Type a broken spec, see
the diagnostic, fix it by clicking the diagnostic and typing, see the graphs, train a little and see the loss
curve move, and open the page's own address again to get the same spec back. Screenshots are kept under
test-artifacts/play/ (RNNDSL_ARTIFACTS overrides the folder).

Skipped, with the reason, where Playwright or /usr/bin/chromium is missing (`.ci/setup` installs both where
it can). Playwright's own browser downloads are never used: they cannot be fetched here."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import serving_playground

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SPEC = """network DigitsElman {
    input  x: 8
    layer  h: 32 tanh <- x, h[t-1]
    layer  y: 10 <- h
    output y last
}
"""

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
sync_api.expect.set_options(timeout=20_000)  # the first run imports torch and loads the task's data


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    yield from serving_playground()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("RNNDSL_ARTIFACTS", ROOT / "test-artifacts")) / "play"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def test_type_a_mistake_fix_it_see_the_graphs_and_train(url: str, artifacts: Path, browser: object) -> None:
    expect = sync_api.expect
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page.goto(url + "#" + urlencode({"spec": SPEC, "task": "digits", "steps": "60", "batch": "16"}))
    expect(page.locator("#verdict")).to_have_text("checks")
    expect(page.locator("#folded svg")).to_be_visible()

    page.locator("#spec").fill(SPEC.replace("<- h\n", "<- hh\n"))  # a typo
    mistake = page.locator("#diagnostics .diagnostic.error")
    expect(mistake).to_have_text(re.compile(r"^4:21: error: unknown name `hh`\s+help: did you mean `h`\?"))
    expect(page.locator("#verdict")).to_have_text("1 error")
    expect(page.locator("#folded")).to_have_class(re.compile("stale"))
    page.screenshot(path=str(artifacts / "1-diagnostic.png"))

    mistake.click()  # selects `hh` in the editor
    page.keyboard.type("h")  # typed over the selection: `<- h` again
    expect(page.locator("#verdict")).to_have_text("checks")
    expect(page.locator("#diagnostics .diagnostic")).to_have_count(0)
    expect(page.locator("#folded")).not_to_have_class(re.compile("stale"))
    expect(page.locator("#unrolled svg")).to_be_visible()
    expect(page.locator("#params")).to_have_text("1,642 parameters")  # 32 × (8 + 32) + 32 and 10 × 32 + 10
    assert page.locator("#spec").input_value() == SPEC
    page.screenshot(path=str(artifacts / "2-fixed.png"))

    # every redraw of the curve, as the page makes it: how many points, and when
    page.evaluate(
        """() => { window.curve = []; const loss = document.getElementById("loss");
        new MutationObserver(() => window.curve.push([loss.getAttribute("points").split(" ").filter(Boolean).length,
        performance.now()])).observe(loss, { attributes: true }); }"""
    )
    page.locator("#train").click()
    expect(page.locator("#train")).to_have_text("Stop")
    expect(page.locator("#status")).to_have_text(re.compile("validation after 60 steps: .*accuracy"))
    redraws = page.evaluate("window.curve")
    grown = [n for n, _ in redraws if n]
    # the curve grew as the events came, seen at several lengths on its way to 60 points (a screen frame may
    # take several steps' events at once)
    assert grown == sorted(set(grown)) and grown[-1] == 60 and len(grown) >= 4
    assert redraws[-1][1] > redraws[1][1]
    heights = {p.split(",")[1] for p in (page.locator("#loss").get_attribute("points") or "").split()}
    assert len(heights) > 10  # and it is a curve, not a line
    expect(page.locator("#train")).to_have_text("Train")
    page.screenshot(path=str(artifacts / "3-trained.png"), full_page=True)

    again = browser.new_page()  # type: ignore[attr-defined]
    again.goto(page.url)  # the address holds the spec and the options
    expect(again.locator("#verdict")).to_have_text("checks")
    assert again.locator("#spec").input_value() == SPEC and again.locator("#steps").input_value() == "60"
    again.close()
    page.close()


def test_stop_cancels_a_run(url: str, browser: object) -> None:
    expect = sync_api.expect
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(url + "#" + urlencode({"spec": SPEC, "steps": "500", "batch": "64"}))
    expect(page.locator("#verdict")).to_have_text("checks")
    page.locator("#train").click()
    expect(page.locator("#status")).to_have_text(re.compile("^step "))
    began = time.monotonic()
    page.locator("#train").click()  # Stop
    expect(page.locator("#status")).to_have_text(re.compile("^stopped at step "))
    expect(page.locator("#train")).to_have_text("Train")
    page.locator("#steps").fill("5")
    page.locator("#train").click()  # a new run starts at once: the stopped one gave its place back
    expect(page.locator("#status")).to_have_text(re.compile("validation after 5 steps"))
    assert time.monotonic() - began < 15
    page.close()
