"""Abuse: credential stuffing against staff and member sign-in is throttled (1,000 attempts
over 100 accounts, each from a new address, many at once), and the owner still signs in;
a real `loyalty serve` refuses bodies over 1 MiB before reading them. Slow clients:
test_slow_clients.py."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import msgspec
import pytest

from tests.helpers.purchases import purchase_body
from tests.helpers.staff import TEST_PASSWORD
from tests.reliability.processes import serving

ATTEMPTS = 1_000
ACCOUNTS = 100
IN_FLIGHT = 50  # attackers do not wait for one answer before sending the next guess
OWNER_ADDRESS = "203.0.113.7"


def rotating(i: int) -> str:
    """Attempt i comes from its own address."""
    return f"198.51.{i // 250}.{i % 250 + 1}"


@pytest.fixture
def post_from(app):
    """POST from a given client address (a fresh connection each time)."""

    async def post(address: str, url: str, body: dict) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(address, 40001))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.post(url, json=body)

    return post


@pytest.fixture
def checked(monkeypatch) -> Counter:
    """Every password actually verified (argon2 run), by the password tried."""
    from loyalty.infrastructure import passwords

    verify = passwords._verify
    seen: Counter = Counter()

    def counting(password_hash: str, password: str) -> bool:
        seen[password] += 1
        return verify(password_hash, password)

    monkeypatch.setattr(passwords, "_verify", counting)
    return seen


async def stuff(post_from, url: str, bodies: list[dict]) -> list[int]:
    """Send `bodies` (attempt i from address rotating(i)), IN_FLIGHT at a time."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int, body: dict) -> int:
        async with gate:
            return (await post_from(rotating(i), url, body)).status_code

    return list(await asyncio.gather(*(one(i, body) for i, body in enumerate(bodies))))


def guesses(accounts: list[str], field: str) -> list[dict]:
    """ATTEMPTS wrong passwords, round robin over the accounts; the password names its account."""
    return [
        {field: accounts[i % len(accounts)], "password": f"{accounts[i % len(accounts)]}#{i:05d}"}
        for i in range(ATTEMPTS)
    ]


def per_account(checked: Counter) -> Counter:
    found: Counter = Counter()
    for password, times in checked.items():
        found[password.split("#")[0]] += times
    return found


# --- oversized bodies ----------------------------------------------------------------------

MiB = 1024 * 1024


@pytest.fixture(scope="module")
async def served(backing_services, app, tmp_path_factory):
    with serving(backing_services, tmp_path_factory.mktemp("serve") / "web.log") as server:
        yield server


def head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def status_and_type(reader: asyncio.StreamReader) -> tuple[int, str]:
    status = int((await asyncio.wait_for(reader.readline(), 5)).split()[1])
    content_type = ""
    while (line := await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-type":
            content_type = value.strip()
    return status, content_type


async def test_a_declared_body_over_one_mebibyte_is_refused_before_it_is_sent(served, pos):
    """Content-Length says 2 MiB; after 64 KiB of it the server has already answered 413."""
    body = purchase_body("00000000-0000-0000-0000-000000000000")
    for path, auth in (("/api/v1/purchases", pos), ("/api/v1/auth/tokens", {})):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        try:
            writer.write(head(path, {**auth, "Content-Length": str(2 * MiB)}))
            writer.write(msgspec.json.encode(body)[: 64 * 1024].ljust(64 * 1024))
            await writer.drain()
            started = time.monotonic()
            status, content_type = await status_and_type(reader)
            assert status == 413, path
            assert content_type.startswith("application/problem+json")
            assert time.monotonic() - started < 2  # not waiting for the 1.9 MiB never sent
        finally:
            writer.close()


async def test_a_chunked_body_growing_past_one_mebibyte_is_refused(served, pos):
    """No length announced: the server counts as the chunks arrive and stops at 1 MiB."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(head("/api/v1/purchases", {**pos, "Transfer-Encoding": "chunked"}))
        answered = asyncio.ensure_future(status_and_type(reader))
        chunk = b" " * (64 * 1024)
        sent = 0
        while not answered.done() and sent < 8 * MiB:
            writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += len(chunk)
            await asyncio.sleep(0.005)
        status, content_type = await asyncio.wait_for(answered, 5)
        assert status == 413 and content_type.startswith("application/problem+json")
        # Refused soon after the first MiB, not after all 8.
        assert MiB < sent <= 2 * MiB, sent
    finally:
        writer.close()


# --- staff ---------------------------------------------------------------------------------


async def add_staff(usernames: list[str]) -> None:
    """Staff accounts in one insert, sharing one hash (100 argon2 hashes would take seconds)."""
    from loyalty.infrastructure.passwords import password_hasher
    from loyalty.staff.tables import Staff

    shared = password_hasher.hash(TEST_PASSWORD)
    await Staff.insert(
        *[Staff(username=u, display_name=u, role="rep", password_hash=shared) for u in usernames]
    )


async def test_staff_credential_stuffing_is_throttled_and_the_owner_still_signs_in(
    post_from, checked, settings
):
    accounts = [f"clerk{i:03d}" for i in range(ACCOUNTS)]
    await add_staff(accounts)
    owner = accounts[7]
    url = "/api/v1/auth/tokens"
    # The owner's usual address: it signed in from there before the attack.
    before = await post_from(OWNER_ADDRESS, url, {"username": owner, "password": TEST_PASSWORD})
    assert before.status_code == 201, before.text
    checked.clear()

    statuses = await stuff(post_from, url, guesses(accounts, "username"))

    limit = settings.login_attempts_per_account
    assert Counter(statuses) == {401: ACCOUNTS * limit, 429: ATTEMPTS - ACCOUNTS * limit}
    # Only `limit` passwords per account were ever hashed, even with 50 guesses in flight;
    # the rest were refused before argon2 ran.
    assert per_account(checked) == {account: limit for account in accounts}
    # A new address with the right password meets the account's lock ...
    stranger = await post_from("198.51.100.99", url, {"username": owner, "password": TEST_PASSWORD})
    assert stranger.status_code == 429 and int(stranger.headers["Retry-After"]) > 0
    # ... the owner's usual address does not.
    again = await post_from(OWNER_ADDRESS, url, {"username": owner, "password": TEST_PASSWORD})
    assert again.status_code == 201, again.text


async def test_staff_sign_in_is_throttled_per_address(post_from, checked, settings):
    accounts = [f"desk{i:03d}" for i in range(settings.login_attempts_per_address + 5)]
    await add_staff(accounts)
    statuses = [
        (
            await post_from(
                "198.51.100.1",
                "/api/v1/auth/tokens",
                {"username": account, "password": f"{account}#x"},
            )
        ).status_code
        for account in accounts
    ]
    allowed = settings.login_attempts_per_address
    assert statuses == [401] * allowed + [429] * 5
    assert sum(checked.values()) == allowed


async def test_the_owner_still_signs_in_during_stuffing(post_from):
    await add_staff(["owner01"])
    url = "/api/v1/auth/tokens"
    right = {"username": "owner01", "password": TEST_PASSWORD}
    assert (await post_from(OWNER_ADDRESS, url, right)).status_code == 201
    for i in range(10):
        await post_from(rotating(i), url, {"username": "owner01", "password": f"guess-{i}-xxxx"})
    assert (await post_from("198.51.100.99", url, right)).status_code == 429
    response = await post_from(OWNER_ADDRESS, url, right)
    assert response.status_code == 201, response.text


# --- members (portal) ----------------------------------------------------------------------


async def add_members(client, admin, count: int) -> list[str]:
    """`count` members with an email and a password (one shared hash); their emails."""
    from loyalty.infrastructure import db
    from loyalty.infrastructure.passwords import password_hasher

    emails = [f"m{i:03d}@example.com" for i in range(count)]
    gate = asyncio.Semaphore(10)

    async def enrol(email: str) -> str:
        async with gate:
            response = await client.post(
                "/api/v1/members", json={"name": email, "email": email}, headers=admin
            )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    ids = await asyncio.gather(*(enrol(email) for email in emails))
    shared = password_hasher.hash(TEST_PASSWORD)
    async with db.connection() as conn:
        await conn.executemany(
            "INSERT INTO member_credentials (member, password_hash, updated_at)"
            " VALUES ($1::uuid, $2, now())",
            [(member_id, shared) for member_id in ids],
        )
    return emails


async def test_member_password_stuffing_is_throttled_and_the_member_still_signs_in(
    client, admin, post_from, checked
):
    from loyalty.portal.codes import TRIES_PER_IDENTIFIER

    accounts = await add_members(client, admin, ACCOUNTS)
    owner = accounts[7]
    url = "/api/v1/me/sign-in/password"
    right = {"identifier": owner, "password": TEST_PASSWORD}
    before = await post_from(OWNER_ADDRESS, url, right)
    assert before.status_code == 201, before.text
    checked.clear()

    statuses = await stuff(post_from, url, guesses(accounts, "identifier"))

    assert Counter(statuses) == {
        401: ACCOUNTS * TRIES_PER_IDENTIFIER,
        429: ATTEMPTS - ACCOUNTS * TRIES_PER_IDENTIFIER,
    }
    assert per_account(checked) == {account: TRIES_PER_IDENTIFIER for account in accounts}
    stranger = await post_from("198.51.100.99", url, right)
    assert stranger.status_code == 429 and int(stranger.headers["Retry-After"]) > 0
    again = await post_from(OWNER_ADDRESS, url, right)
    assert again.status_code == 201, again.text


async def test_member_code_requests_and_code_guessing_are_throttled(
    client, admin, post_from, mailbox
):
    from loyalty.portal.codes import SENDS_PER_IDENTIFIER, TRIES_PER_IDENTIFIER

    accounts = await add_members(client, admin, ACCOUNTS)
    owner = accounts[7]
    # The member signed in from home before (by password), so home is a known address.
    home = await post_from(
        OWNER_ADDRESS,
        "/api/v1/me/sign-in/password",
        {"identifier": owner, "password": TEST_PASSWORD},
    )
    assert home.status_code == 201, home.text

    # 1,000 code requests over the 100 members from rotating addresses: 3 codes each at most.
    requests = await stuff(
        post_from,
        "/api/v1/me/sign-in/code",
        [{"identifier": accounts[i % ACCOUNTS]} for i in range(ATTEMPTS)],
    )
    assert Counter(requests) == {
        202: ACCOUNTS * SENDS_PER_IDENTIFIER,
        429: ATTEMPTS - ACCOUNTS * SENDS_PER_IDENTIFIER,
    }
    assert {len(mailbox.to(account)) for account in accounts} == {SENDS_PER_IDENTIFIER}

    # 1,000 code guesses, never the code that was sent: 5 are checked per member, none works.
    sent = {account: mailbox.last_code(account) for account in accounts}

    def wrong(account: str, i: int) -> str:
        guess = f"{i * 7919 % 10**6:06d}"
        return guess if guess != sent[account] else f"{(i + 1) % 10**6:06d}"

    tries = await stuff(
        post_from,
        "/api/v1/me/sign-in",
        [
            {"identifier": accounts[i % ACCOUNTS], "code": wrong(accounts[i % ACCOUNTS], i)}
            for i in range(ATTEMPTS)
        ],
    )
    assert Counter(tries) == {
        401: ACCOUNTS * TRIES_PER_IDENTIFIER,
        429: ATTEMPTS - ACCOUNTS * TRIES_PER_IDENTIFIER,
    }
    # Even the right code is refused from a new address while the lock holds ...
    code = mailbox.last_code(owner)
    stranger = await post_from(
        "198.51.100.99", "/api/v1/me/sign-in", {"identifier": owner, "code": code}
    )
    assert stranger.status_code == 429
    # ... while the member, at home, still gets a fresh code and signs in with it.
    sent = await post_from(OWNER_ADDRESS, "/api/v1/me/sign-in/code", {"identifier": owner})
    assert sent.status_code == 202, sent.text
    fresh = mailbox.last_code(owner)
    signed_in = await post_from(
        OWNER_ADDRESS, "/api/v1/me/sign-in", {"identifier": owner, "code": fresh}
    )
    assert signed_in.status_code == 201, signed_in.text


async def test_member_sign_in_is_throttled_per_address(client, admin, post_from, checked, mailbox):
    from loyalty.portal.codes import SENDS_PER_ADDRESS, TRIES_PER_ADDRESS

    accounts = await add_members(client, admin, TRIES_PER_ADDRESS + 5)
    address = "198.51.100.1"
    sends = [
        (await post_from(address, "/api/v1/me/sign-in/code", {"identifier": a})).status_code
        for a in accounts[: SENDS_PER_ADDRESS + 3]
    ]
    assert sends == [202] * SENDS_PER_ADDRESS + [429] * 3
    assert len(mailbox.messages) == SENDS_PER_ADDRESS
    tries = [
        (
            await post_from(
                address, "/api/v1/me/sign-in/password", {"identifier": a, "password": f"{a}#x"}
            )
        ).status_code
        for a in accounts
    ]
    assert tries == [401] * TRIES_PER_ADDRESS + [429] * 5
    assert sum(checked.values()) == TRIES_PER_ADDRESS
