"""Schemathesis against the served OpenAPI document, with a staff admin token and with an
integration API key, every check on: no 5xx, every response matches its schema and one of
the documented status codes. Bounded (`FUZZ_EXAMPLES`, default 8 per operation) for CI.
Gates on server errors and schema violations beyond the baseline; the full report of every
check goes to test-artifacts/reliability/fuzz-<who>.txt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.processes import WebServer, child_env

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "8")
SEED = os.environ.get("FUZZ_SEED", "20240610")
# Signing out would revoke the very token the run authenticates with.
EXCLUDED = ["--exclude-path", "/api/v1/auth/tokens/current"]


@pytest.fixture
def served(backing_services, tmp_path):
    server = WebServer(
        child_env(backing_services["database_url"], backing_services["redis_url"]),
        tmp_path / "web.log",
    ).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# Failures known at the time of writing (listed in the README's "Guarantees"): the run fails
# on any failure not in the baseline. FUZZ_BASELINE_UPDATE=1 rewrites it.
BASELINE = Path(__file__).with_name("fuzz-baseline")


def schemathesis(
    server: WebServer, token: str, report: str, who: str
) -> subprocess.CompletedProcess:
    baseline = BASELINE / f"{who}.json"
    baseline_args = []
    if os.environ.get("FUZZ_BASELINE_UPDATE"):
        BASELINE.mkdir(exist_ok=True)
        baseline_args = ["--baseline", str(baseline), "--baseline-update"]
    elif baseline.exists():
        baseline_args = ["--baseline", str(baseline)]
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.url}/schema/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "2",
        "--phases",
        "examples,coverage,fuzzing",
        "--request-timeout",
        "20",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        report,
        *EXCLUDED,
        *baseline_args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("who", ["admin", "api_key"])
async def test_fuzz_the_api(who, served, client, admin, tmp_path):
    if who == "admin":
        token = admin["Authorization"].split(" ", 1)[1]
    else:
        from loyalty.auth import API_KEY_SCOPES

        created = await client.post(
            "/api/v1/api-keys",
            json={"name": "fuzz", "scopes": sorted(API_KEY_SCOPES)},
            headers=admin,
        )
        token = created.json()["key"]
    result = schemathesis(served, token, str(tmp_path / "junit.xml"), who)
    output = result.stdout + result.stderr
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"fuzz-{who}.txt").write_text(output + "\n--- server log ---\n" + served.tail(400))
    summary = (
        output.split("Failures:", 1)[1].split("Warnings:", 1)[0] if "Failures:" in output else ""
    )
    # Hard gates: a server error (ST101) or a response that breaks its schema (ST108), beyond
    # the baseline. The other checks run too and are reported in test-artifacts/reliability/,
    # but while the API is still growing they are not stable enough to gate on.
    hard = [line for line in summary.splitlines() if "ST101" in line or "ST108" in line]
    assert result.returncode == 0 or not hard, (
        "\n".join(hard) + "\n" + output[-20000:] + "\n--- server log ---\n" + served.tail(80)
    )
