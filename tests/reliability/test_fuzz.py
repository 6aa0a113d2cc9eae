"""Schemathesis against the served OpenAPI document, with a staff admin token and with an
integration API key, every check on: no 5xx, every response matches its schema, its content
type and one of the documented status codes, OPTIONS lists the path's methods, schema-valid
requests are not refused with 400 and schema-violating ones are not accepted. Bounded
(`FUZZ_EXAMPLES`, default 8 per operation) for CI. Any finding not in the baseline fails the
run; the full report goes to test-artifacts/reliability/fuzz-<who>.txt. schemathesis.toml
beside this file: a schema-valid request may be refused with 422 (a business rule)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.processes import WebServer, serving

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "8")
SEED = os.environ.get("FUZZ_SEED", "20240610")
# Signing out would revoke the very token the run authenticates with.
EXCLUDED = ["--exclude-path", "/api/v1/auth/tokens/current"]


@pytest.fixture
def served(backing_services, tmp_path):
    with serving(backing_services, tmp_path / "web.log") as server:
        yield server


# Failures accepted (listed and justified in the README's "Guarantees"): the run fails on any
# failure not in the baseline. FUZZ_BASELINE_UPDATE=1 rewrites it.
BASELINE = Path(__file__).with_name("fuzz-baseline")
CONFIG = Path(__file__).with_name("schemathesis.toml")


def schemathesis(
    server: WebServer, token: str, report: str, who: str
) -> subprocess.CompletedProcess:
    baseline = BASELINE / f"{who}.json"
    baseline_args = []
    if os.environ.get("FUZZ_BASELINE_UPDATE"):
        BASELINE.mkdir(exist_ok=True)
        # Record what this run finds and drop what it no longer finds.
        baseline_args = ["--baseline", str(baseline), "--baseline-update", "--baseline-prune"]
    elif baseline.exists():
        baseline_args = ["--baseline", str(baseline)]
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
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
    # Every check gates: schemathesis exits non-zero on any failure that is not in the
    # baseline (server error, schema, status code, content type, Allow header, positive and
    # negative data).
    assert result.returncode == 0, output[-20000:] + "\n--- server log ---\n" + served.tail(80)
