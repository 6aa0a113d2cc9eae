"""`loyalty demo` from nothing: embedded servers, demo data, web and worker, a real browser
signing in, data kept across runs, and no process left behind after Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.browser import browser_page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_using(path: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(path) in line and "ps -eo" not in line]


class Demo:
    def __init__(self, data_dir: Path, port: int) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("LOYALTY_") and k != "PICCOLO_CONF"
        }
        env.update(LOYALTY_DATA_DIR=str(data_dir), LOYALTY_PORT=str(port))
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "loyalty", "demo"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        self.ready = threading.Event()
        # Keep reading: a full pipe would block the demo's logging and so the demo itself.
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith("Press Ctrl-C"):
                self.ready.set()

    def wait_ready(self, timeout: float = 60) -> str:
        if not self.ready.wait(timeout):
            raise AssertionError("demo did not become ready:\n" + "".join(self.output))
        return "".join(self.output)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        self.reader.join(timeout=10)
        return self.process.returncode


@pytest.fixture
def demo_dir(tmp_path):
    data_dir = tmp_path / "demo-data"
    yield data_dir
    from loyalty.infrastructure.embedded import stop_pids_in

    stop_pids_in(data_dir)  # only matters if a test failed half-way


async def test_demo_runs_signs_in_in_a_browser_and_stops_cleanly(demo_dir):
    port = free_port()
    demo = Demo(demo_dir, port)
    try:
        started = time.monotonic()
        text = demo.wait_ready()
        assert time.monotonic() - started < 30, "demo must be ready within 30 seconds"
        assert "PostgreSQL: started embedded" in text
        logins = dict(re.findall(r"^\s+(admin|rep)\s+(\S+)\s+\w+$", text, re.M))
        assert set(logins) == {"admin", "rep"}

        health = httpx.get(f"http://127.0.0.1:{port}/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"

        async with browser_page() as page:
            await page.goto(f"http://127.0.0.1:{port}/console")
            await page.get_by_label("Username").fill("admin")
            await page.get_by_label("Password").fill(logins["admin"])
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_url("**/console")
            assert "Welcome, admin" in await page.content()
            chart = page.get_by_role("img", name=re.compile("Members by tier"))
            assert await chart.count() == 1
            rows = page.locator(".chart-row")
            assert await rows.count() == 3  # normal, silver, gold: the switched-on tiers
            counts = [
                int((await v.inner_text()).replace(",", ""))
                for v in await page.locator(".chart-value").all()
            ]
            assert sum(counts) == 300 and counts[0] > 0
            # Staff is in the Administration group's bar.
            await page.get_by_role("link", name="Administration").click()
            await page.get_by_role("link", name="Staff", exact=True).click()
            assert await page.locator("tr[data-username=rep2]").count() == 1
            await page.get_by_role("button", name="Sign out").click()
            await page.wait_for_url("**/console/login")
    finally:
        code = demo.interrupt()
    assert code == 0, "".join(demo.output)
    assert "stopped web, worker, Redis and PostgreSQL" in "".join(demo.output)
    assert processes_using(demo_dir) == []

    # Second run: same data folder, nothing re-seeded, same logins work.
    again = Demo(demo_dir, port)
    try:
        text = again.wait_ready()
        assert dict(re.findall(r"^\s+(admin|rep)\s+(\S+)\s+\w+$", text, re.M)) == logins
        token = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/tokens",
            json={"username": "rep", "password": logins["rep"]},
        )
        assert token.status_code == 201
        logins_file = json.loads((demo_dir / "demo-logins.json").read_text())
        assert len(logins_file) == 8
        # The marketing workspace has something to show: segments, offers in each state.
        manager = next(x for x in logins_file if x["username"] == "mktmanager")
        assert manager["role"] == "manager"
        token = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/tokens",
            json={"username": "mktmanager", "password": manager["password"]},
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        offers = httpx.get(f"http://127.0.0.1:{port}/api/v1/offers", headers=headers).json()
        assert {"draft", "submitted", "sent"} <= {o["status"] for o in offers}
        assert any(o["auto_kind"] == "birthday" and o["template_id"] is None for o in offers)
        sent = next(o for o in offers if o["status"] == "sent" and o["template_id"] is None)
        results = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/offers/{sent['id']}/results", headers=headers
        ).json()
        assert results["audience"] > 0 and results["delivered"]["portal"] == results["audience"]
        segments = httpx.get(f"http://127.0.0.1:{port}/api/v1/segments", headers=headers)
        assert len(segments.json()) >= 3
    finally:
        assert again.interrupt() == 0
    assert processes_using(demo_dir) == []
