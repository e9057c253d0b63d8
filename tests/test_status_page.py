"""The status page in headless Chromium: it shows the backend and its models, follows a request while
it runs (in flight, then tokens), lists an error, and is screenshotted for a look.

Chromium is Debian's (``make setup`` installs it), driven by Playwright for Python. Set
``STATUS_SCREENSHOT_DIR`` to keep the screenshot somewhere other than the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright

from support.faults import MODEL, Fault, FaultUpstream
from support.shim import shim_in_loop

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
WAIT_MS = 15_000  # the page polls every 2 s; a slow shared machine gets some slack


def _need_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make setup` (it installs Debian's chromium)", pytrace=False)


async def _text_becomes(page: Page, selector: str, text: str) -> None:
    await page.wait_for_function(
        "([sel, want]) => document.querySelector(sel)?.textContent === want", arg=[selector, text], timeout=WAIT_MS,
    )


async def test_status_page_follows_the_shim(upstream: FaultUpstream, tmp_path: Path) -> None:
    _need_chromium()
    upstream.default = Fault(delay=0.6)  # 8 words: a stream of about 5 s, long enough to be seen in flight
    async with shim_in_loop("--backend", upstream.url) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 760})
            await page.goto(base + "/status")

            row = page.locator(f'#backends tr[data-backend="{upstream.url}"]')
            await row.wait_for(timeout=WAIT_MS)
            assert await row.locator(".health").text_content() == "up"
            assert await row.locator(".model").all_text_contents() == [MODEL + ":latest"]
            assert await page.locator("#tokens-out").text_content() == "0"

            async def chat() -> int:
                body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
                async with aiohttp.ClientSession() as session, session.post(base + "/api/chat", json=body) as resp:
                    await resp.read()
                    return resp.status

            running = asyncio.ensure_future(chat())
            await _text_becomes(page, "#in-flight", "1")
            await _text_becomes(page, "#streams", "1")
            assert await running == 200
            await _text_becomes(page, "#tokens-out", "8")
            await _text_becomes(page, "#in-flight", "0")
            assert float(await page.locator("#tokens-per-second").text_content() or "0") > 0

            async with aiohttp.ClientSession() as session, \
                    session.post(base + "/api/chat", json={"model": "no-such-model", "messages": []}) as resp:
                assert resp.status == 404
            await page.locator("#errors td", has_text="ModelNotFound").wait_for(timeout=WAIT_MS)
            assert await page.locator("#problem").is_hidden()

            shot = tmp_path / "status.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            keep = os.environ.get("STATUS_SCREENSHOT_DIR")
            if keep:
                shutil.copy(shot, Path(keep) / "status.png")
        finally:
            await browser.close()


async def test_status_page_says_when_the_key_is_missing(upstream: FaultUpstream) -> None:
    """With ``--api-key`` the page itself needs the header: a browser that sends it sees the page, and
    if its JSON polls lack the key the page says so instead of showing stale figures."""
    _need_chromium()
    async with shim_in_loop("--backend", upstream.url, "--api-key", "k") as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(extra_http_headers={"Authorization": "Bearer k"})
            page = await context.new_page()
            await page.goto(base + "/status")
            await page.locator(f'#backends tr[data-backend="{upstream.url}"]').wait_for(timeout=WAIT_MS)

            await context.set_extra_http_headers({})
            await page.locator("#problem", has_text="API key").wait_for(timeout=WAIT_MS)
        finally:
            await browser.close()
