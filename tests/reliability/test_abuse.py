"""Abuse: credential stuffing is throttled; oversized bodies are refused early."""

from __future__ import annotations

from tests.conftest import TEST_PASSWORD


async def test_bodies_over_one_mebibyte_are_refused(client, pos):
    body = b'{"external_id": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = await client.post(
        "/api/v1/purchases",
        content=body,
        headers={**pos, "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def stuff(make_client, accounts: list[str], attempts: int) -> list[int]:
    """`attempts` wrong passwords spread over `accounts`, each from a new address."""
    statuses = []
    for i in range(attempts):
        attacker = make_client(f"198.51.{i // 250}.{i % 250 + 1}")
        response = await attacker.post(
            "/api/v1/auth/tokens",
            json={"username": accounts[i % len(accounts)], "password": f"guess-{i:06d}-xx"},
        )
        statuses.append(response.status_code)
    return statuses


async def test_staff_credential_stuffing_is_throttled(make_client, make_staff, settings):
    accounts = [f"clerk{i:03d}" for i in range(20)]
    for username in accounts:
        await make_staff(username, "rep")
    statuses = await stuff(make_client, accounts, 200)
    assert set(statuses) <= {401, 429}
    # Per account: only the first few wrong guesses are even checked.
    assert statuses.count(401) == len(accounts) * settings.login_attempts_per_account
    assert statuses.count(429) == 200 - statuses.count(401)


async def test_the_owner_still_signs_in_during_stuffing(make_client, make_staff):
    await make_staff("owner01", "rep")
    owner = make_client("203.0.113.7")
    # The owner's usual address: it signed in before the attack.
    before = await owner.post(
        "/api/v1/auth/tokens", json={"username": "owner01", "password": TEST_PASSWORD}
    )
    assert before.status_code == 201
    await stuff(make_client, ["owner01"], 10)
    stranger = make_client("198.51.100.99")
    locked = await stranger.post(
        "/api/v1/auth/tokens", json={"username": "owner01", "password": TEST_PASSWORD}
    )
    assert locked.status_code == 429  # a new address still meets the account's lock
    response = await owner.post(
        "/api/v1/auth/tokens", json={"username": "owner01", "password": TEST_PASSWORD}
    )
    assert response.status_code == 201, response.text
