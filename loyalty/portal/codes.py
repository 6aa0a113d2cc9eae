"""One-time codes the portal sends to a phone or email (sign-in, sign-up, a contact change):
made, delivered, checked once, and the rate limits that make guessing them hopeless."""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from loyalty.errors import InvalidInput, RateLimited
from loyalty.infrastructure import db, i18n, messaging, ratelimit
from loyalty.members import service as members
from loyalty.settings import Settings

CODE_TTL = 600  # a code lives 10 minutes
SENDS_PER_IDENTIFIER = 3  # codes sent to one phone or email per 10 minutes
SENDS_PER_ADDRESS = 10  # codes requested from one client address per 10 minutes
TRIES_PER_IDENTIFIER = 5  # wrong codes or passwords for one account per 10 minutes
TRIES_PER_ADDRESS = 20  # from one client address per 10 minutes
WINDOW = 600
WRONG_CODE = i18n.N_("That code is not right or has expired.")


def digest(settings: Settings, *parts: str) -> str:
    return hmac.new(settings.secret_key.encode(), "|".join(parts).encode(), "sha256").hexdigest()


@dataclass
class Identifier:
    kind: str  # email | phone
    value: str  # normalised


def parse_identifier(raw: str, field: str = "identifier") -> Identifier:
    raw = raw.strip()
    if not raw:
        raise InvalidInput("enter your phone number or email", field=field)
    if "@" in raw:
        return Identifier("email", members.normalise_email(raw, field))
    return Identifier("phone", members.normalise_phone(raw, field))


async def member_by(identifier: Identifier) -> Any | None:
    async with db.connection() as conn:
        return await conn.fetchrow(
            f"SELECT id, number, name, email, phone FROM members"
            f" WHERE {identifier.kind} = $1 AND status = 'active'",
            identifier.value,
        )


async def deliver_code(identifier: Identifier, code: str, purpose: str, settings: Settings) -> None:
    _ = i18n.gettext
    texts = {
        "sign_in": _("Your sign-in code is %(code)s. It expires in 10 minutes."),
        "sign_up": _("Your code to finish joining is %(code)s. It expires in 10 minutes."),
        "already_member": _(
            "You already have an account with us. Your sign-in code is %(code)s."
            " It expires in 10 minutes."
        ),
        "change": _("Your code to confirm this address is %(code)s. It expires in 10 minutes."),
    }
    text = texts[purpose] % {"code": code}
    if identifier.kind == "email":
        await messaging.send_email(
            messaging.Email(
                to=identifier.value, subject=_("Your code: %(code)s") % {"code": code}, text=text
            ),
            settings,
        )
    else:
        await messaging.sms_sender(settings).send(identifier.value, text)


def too_many(wait: int) -> RateLimited:
    return RateLimited(
        i18n.gettext("Too many attempts. Try again in %(seconds)s seconds.") % {"seconds": wait},
        retry_after=wait,
    )


async def limit(redis: Redis, limits: list[tuple[str, int]]) -> None:
    """Count one send on every limit, or refuse (and count nothing) if one is reached."""
    wait = await ratelimit.take(redis, limits, WINDOW)
    if wait:
        raise too_many(wait)


async def new_code(redis: Redis, key: str, settings: Settings, payload: dict) -> str:
    code = f"{secrets.randbelow(10**6):06d}"
    await redis.set(key, json.dumps({**payload, "code": digest(settings, key, code)}), ex=CODE_TTL)
    return code


async def take_code(redis: Redis, key: str, code: str, settings: Settings) -> dict | None:
    """The payload stored with a correct code, which is then used up; None otherwise."""
    raw = await redis.get(key)
    if raw is None:
        return None
    stored = json.loads(raw)
    if not hmac.compare_digest(stored["code"], digest(settings, key, code.strip())):
        return None
    # Single use: only the request that deletes it may use it.
    if not await redis.delete(key):
        return None
    return stored


async def guarded(
    redis: Redis, client: str, account: str, *, sign_in: bool = False
) -> ratelimit.SignInAttempt:
    """Count a guess at a code or password (the same limits and owner exemption as staff
    sign-in), or refuse it before anything is checked."""
    attempt = ratelimit.SignInAttempt(
        redis,
        client=client,
        account_key=f"portal:try:id:{account}",
        address_key=f"portal:try:address:{client}",
        known_key=f"portal:known:{account}" if sign_in else None,
        account_limit=TRIES_PER_IDENTIFIER,
        address_limit=TRIES_PER_ADDRESS,
        window_seconds=WINDOW,
    )
    wait = await attempt.begin()
    if wait:
        raise too_many(wait)
    return attempt
