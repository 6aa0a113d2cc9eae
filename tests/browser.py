"""Debian's Chromium driven by Playwright (Playwright cannot download its own browsers here)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn

from tests.helpers.staff import TEST_PASSWORD

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

CHROMIUM = os.environ.get("LOYALTY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@asynccontextmanager
async def browser_page() -> AsyncIterator:
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)  # never skipped on CI
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page()
            yield page
        finally:
            await browser.close()


@asynccontextmanager
async def serve(app) -> AsyncIterator[str]:
    """The test app on a local port, in the test's own event loop (it shares the pool)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def shot(page, area: str, name: str) -> None:
    """A full-page screenshot, saved as test-artifacts/<area>/<name>.png."""
    folder = ARTIFACTS / area
    folder.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


async def staff_sign_in(page, base: str, username: str) -> None:
    """Sign in to the console as a staff user made by `make_staff` (English page)."""
    await page.goto(f"{base}/console/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(TEST_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/console")


async def member_sign_in(page, base: str, mailbox, email: str) -> None:
    """Sign in to the portal with the code the test SMTP server caught."""
    await page.goto(f"{base}/portal/sign-in")
    await page.get_by_label("Phone or email").first.fill(email)
    await page.get_by_role("button", name="Send me a code").click()
    await page.get_by_label("Code", exact=True).wait_for()
    await page.get_by_label("Code", exact=True).fill(mailbox.last_code(email))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/portal")
