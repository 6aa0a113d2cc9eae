"""The member portal's own rules: sign-in by one-time code or password, self sign-up,
verified changes of phone or email, member API tokens, the data export, closure requests
and messages to the company. Everything else the portal shows comes from the domain
services, called with the member as the principal (so a member only ever reaches their own
data)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from redis.asyncio import Redis

from loyalty.auth import PORTAL, Principal, member_principal
from loyalty.errors import Conflict, DomainError, InvalidInput, NotAuthenticated, RateLimited
from loyalty.infrastructure import db, i18n, messaging, ratelimit
from loyalty.members import schemas as member_schemas
from loyalty.members import service as members
from loyalty.portal import schemas
from loyalty.reps import contacts
from loyalty.settings import Settings
from loyalty.staff.service import _DUMMY_HASH, password_hasher, password_matches
from loyalty.workflows.enrolment import enrol_member

CODE_TTL = 600  # a code lives 10 minutes
SENDS_PER_IDENTIFIER = 3  # codes sent to one phone or email per 10 minutes
SENDS_PER_ADDRESS = 10  # codes requested from one client address per 10 minutes
TRIES_PER_IDENTIFIER = 5  # wrong codes or passwords for one account per 10 minutes
TRIES_PER_ADDRESS = 20  # from one client address per 10 minutes
WINDOW = 600
TOKEN_PREFIX = "mbr_"
WRONG_CODE = i18n.N_("That code is not right or has expired.")
WRONG_PASSWORD = i18n.N_("That sign-in is not right.")


def _digest(settings: Settings, *parts: str) -> str:
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


async def _member_by(identifier: Identifier) -> Any | None:
    async with db.connection() as conn:
        return await conn.fetchrow(
            f"SELECT id, number, name, email, phone FROM members"
            f" WHERE {identifier.kind} = $1 AND status = 'active'",
            identifier.value,
        )


async def _deliver_code(
    identifier: Identifier, code: str, purpose: str, settings: Settings
) -> None:
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


def _too_many(wait: int) -> RateLimited:
    return RateLimited(
        i18n.gettext("Too many attempts. Try again in %(seconds)s seconds.") % {"seconds": wait},
        retry_after=wait,
    )


async def _limit(redis: Redis, limits: list[tuple[str, int]]) -> None:
    """Count one send on every limit, or refuse (and count nothing) if one is reached."""
    wait = await ratelimit.take(redis, limits, WINDOW)
    if wait:
        raise _too_many(wait)


async def _new_code(redis: Redis, key: str, settings: Settings, payload: dict) -> str:
    code = f"{secrets.randbelow(10**6):06d}"
    await redis.set(key, json.dumps({**payload, "code": _digest(settings, key, code)}), ex=CODE_TTL)
    return code


async def _take_code(redis: Redis, key: str, code: str, settings: Settings) -> dict | None:
    """The payload stored with a correct code, which is then used up; None otherwise."""
    raw = await redis.get(key)
    if raw is None:
        return None
    stored = json.loads(raw)
    if not hmac.compare_digest(stored["code"], _digest(settings, key, code.strip())):
        return None
    # Single use: only the request that deletes it may use it.
    if not await redis.delete(key):
        return None
    return stored


# --- sign-in ------------------------------------------------------------------------------


async def request_sign_in_code(raw: str, *, redis: Redis, client: str, settings: Settings) -> None:
    """Send a sign-in code if the phone or email belongs to a member; the answer is the same
    either way."""
    identifier = parse_identifier(raw)
    limits = [(f"portal:send:address:{client}", SENDS_PER_ADDRESS)]
    # As with guesses, someone else's requests do not stop the owner at a known address.
    if not await redis.sismember(f"portal:known:{identifier.value}", client):
        limits.append((f"portal:send:id:{identifier.value}", SENDS_PER_IDENTIFIER))
    await _limit(redis, limits)
    member = await _member_by(identifier)
    if member is None:
        return
    code = await _new_code(
        redis, f"portal:code:sign_in:{identifier.value}", settings, {"member": str(member["id"])}
    )
    await _deliver_code(identifier, code, "sign_in", settings)


async def _guarded(
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
        raise _too_many(wait)
    return attempt


async def sign_in_with_code(
    raw: str, code: str, *, redis: Redis, client: str, settings: Settings
) -> Principal:
    identifier = parse_identifier(raw)
    attempt = await _guarded(redis, client, identifier.value, sign_in=True)
    stored = await _take_code(redis, f"portal:code:sign_in:{identifier.value}", code, settings)
    member = await _member_by(identifier) if stored else None
    if member is None or str(member["id"]) != stored["member"]:  # type: ignore[index]
        raise NotAuthenticated(i18n.gettext(WRONG_CODE))
    await attempt.succeeded()
    return member_principal(member["id"], member["number"])


async def sign_in_with_password(
    raw: str, password: str, *, redis: Redis, client: str, settings: Settings
) -> Principal:
    identifier = parse_identifier(raw)
    attempt = await _guarded(redis, client, identifier.value, sign_in=True)
    member = await _member_by(identifier)
    async with db.connection() as conn:
        stored = (
            await conn.fetchval(
                "SELECT password_hash FROM member_credentials WHERE member = $1", member["id"]
            )
            if member
            else None
        )
    # The same work whether or not the account exists.
    if (
        not await password_matches(stored or _DUMMY_HASH, password[:128])
        or member is None
        or not stored
    ):
        raise NotAuthenticated(i18n.gettext(WRONG_PASSWORD))
    await attempt.succeeded()
    return member_principal(member["id"], member["number"])


async def set_password(principal: Principal, password: str) -> None:
    if len(password) < 10 or len(password) > 128:
        raise InvalidInput(i18n.gettext("Use 10 to 128 characters."), field="password")
    async with db.connection() as conn:
        await conn.execute(
            """
            INSERT INTO member_credentials (member, password_hash, updated_at)
            VALUES ($1, $2, now())
            ON CONFLICT (member) DO UPDATE SET password_hash = $2, updated_at = now()
            """,
            principal.id,
            await asyncio.to_thread(password_hasher.hash, password),
        )


# --- member API tokens --------------------------------------------------------------------


async def issue_token(principal: Principal, *, redis: Redis, settings: Settings) -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await redis.set(
        f"member-token:{hashlib.sha256(token.encode()).hexdigest()}",
        f"{principal.id}|{principal.label}",
        ex=settings.token_ttl_hours * 3600,
    )
    return token


async def principal_for_token(token: str, redis: Redis) -> Principal | None:
    raw = await redis.get(f"member-token:{hashlib.sha256(token.encode()).hexdigest()}")
    if raw is None:
        return None
    member_id = (raw.decode() if isinstance(raw, bytes) else raw).split("|", 1)[0]
    return await principal_for_member(UUID(member_id))


async def revoke_token(token: str, redis: Redis) -> None:
    await redis.delete(f"member-token:{hashlib.sha256(token.encode()).hexdigest()}")


async def principal_for_member(member_id: UUID) -> Principal | None:
    """The member as a principal while their account is active (merged: signed out)."""
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT id, number FROM members WHERE id = $1 AND status = 'active'", member_id
        )
    return member_principal(row["id"], row["number"]) if row else None


# --- sign-up ------------------------------------------------------------------------------


async def start_sign_up(
    data: schemas.SignUp, *, redis: Redis, client: str, settings: Settings
) -> str:
    """Check the form, then send a code to the phone or email; the member is created when
    the code comes back. Returns the token of this pending sign-up."""
    if not data.email and not data.phone:
        raise InvalidInput(i18n.gettext("Enter a phone number or an email."), field="email")
    email = members.normalise_email(data.email, "email") if data.email else None
    phone = members.normalise_phone(data.phone, "phone") if data.phone else None
    if data.referral_code:
        from loyalty.referrals import service as referrals

        await referrals.find_referrer(data.referral_code)
    identifier = Identifier("email", email) if email else Identifier("phone", phone or "")
    await _limit(
        redis,
        [
            (f"portal:send:address:{client}", SENDS_PER_ADDRESS),
            (f"portal:send:id:{identifier.value}", SENDS_PER_IDENTIFIER),
        ],
    )
    token = secrets.token_urlsafe(24)
    existing = await _member_by(identifier)
    # The message, not the page, says whether an account exists: only the owner reads it.
    payload = {
        "form": msgspec.to_builtins(data),
        "existing": str(existing["id"]) if existing else None,
        "identifier": identifier.value,
        "verified": identifier.kind,
    }
    code = await _new_code(redis, f"portal:code:sign_up:{token}", settings, payload)
    await _deliver_code(identifier, code, "already_member" if existing else "sign_up", settings)
    return token


async def finish_sign_up(
    token: str, code: str, *, redis: Redis, client: str, settings: Settings
) -> Principal:
    attempt = await _guarded(redis, client, f"sign_up:{token}")
    stored = await _take_code(redis, f"portal:code:sign_up:{token}", code, settings)
    if stored is None:
        raise NotAuthenticated(i18n.gettext(WRONG_CODE))
    await attempt.succeeded()
    if stored["existing"]:
        principal = await principal_for_member(UUID(stored["existing"]))
        if principal is None:
            raise NotAuthenticated(i18n.gettext(WRONG_CODE))
        return principal
    form = msgspec.convert(stored["form"], schemas.SignUp)
    consents = [
        member_schemas.Consent(channel=channel, granted=True, method="portal sign-up form")
        for channel in form.consents
    ]
    # Only the address the code went to is proven; the other can be added later through
    # a contact change, which sends it a code of its own.
    verified = stored.get("verified", "email" if form.email else "phone")
    created = await enrol_member(
        member_schemas.MemberCreate(
            name=form.name,
            phone=(form.phone or None) if verified == "phone" else None,
            email=(form.email or None) if verified == "email" else None,
            referral_code=form.referral_code or None,
            contact_preferences=member_schemas.ContactPreferences(
                channels=list(form.consents), consents=consents
            ),
        ),
        PORTAL,
        channel="portal",
    )
    return member_principal(created.id, created.number)


# --- profile ------------------------------------------------------------------------------


async def save_preferences(
    principal: Principal, channels: list[str], decisions: dict[str, bool], *, method: str
) -> member_schemas.Member:
    """A member's own channel order and consent decisions. A changed or new consent is
    recorded now, with `method`; an unchanged one keeps its original record as evidence."""
    member = await members.get_member(principal.id, principal)
    consents = {c.channel: c for c in member.contact_preferences.consents}
    for channel, granted in decisions.items():
        if channel not in consents or consents[channel].granted != granted:
            consents[channel] = member_schemas.Consent(
                channel=channel, granted=granted, method=method
            )
    return await members.update_member(
        principal.id,
        member_schemas.MemberUpdate(
            contact_preferences=member_schemas.ContactPreferences(
                channels=channels, consents=sorted(consents.values(), key=lambda c: c.channel)
            )
        ),
        principal,
    )


async def start_contact_change(
    principal: Principal, field: str, raw: str, *, redis: Redis, settings: Settings
) -> None:
    """A new phone or email takes effect once the code sent to it comes back."""
    identifier = parse_identifier(raw, field)
    if identifier.kind != field:
        raise InvalidInput(i18n.gettext("This is not a valid value here."), field=field)
    if await _member_by(identifier) is not None:
        raise Conflict(i18n.gettext("This is already registered to an account."), field=field)
    key = f"portal:send:id:{identifier.value}"
    await _limit(redis, [(key, SENDS_PER_IDENTIFIER)])
    code = await _new_code(
        redis,
        f"portal:code:change:{principal.id}",
        settings,
        {"field": field, "value": identifier.value},
    )
    await _deliver_code(identifier, code, "change", settings)


async def confirm_contact_change(
    principal: Principal, code: str, *, redis: Redis, client: str, settings: Settings
) -> member_schemas.Member:
    attempt = await _guarded(redis, client, f"change:{principal.id}")
    stored = await _take_code(redis, f"portal:code:change:{principal.id}", code, settings)
    if stored is None:
        raise NotAuthenticated(i18n.gettext(WRONG_CODE))
    await attempt.succeeded()
    update = member_schemas.MemberUpdate(**{stored["field"]: stored["value"]})
    return await members.update_member(principal.id, update, principal)


# --- privacy and the company's service line -----------------------------------------------


async def export_data(principal: Principal) -> dict[str, Any]:
    """Everything held about the member, as JSON-ready data."""
    member = await members.get_member(principal.id, principal)
    tables = {
        "changes": ("SELECT * FROM member_changes WHERE member = $1 ORDER BY at", "member"),
        "points_ledger": (
            "SELECT * FROM points_ledger WHERE member = $1 ORDER BY created_at",
            "member",
        ),
        "purchases": ("SELECT * FROM purchases WHERE member = $1 ORDER BY occurred_at", "member"),
        # Through the member's purchases (indexed), not by member (every line ever posted).
        "purchase_lines": (
            "SELECT * FROM purchase_lines"
            " WHERE purchase IN (SELECT id FROM purchases WHERE member = $1)"
            " ORDER BY purchase, line_no",
            "member",
        ),
        "returns": (
            "SELECT * FROM purchase_returns"
            " WHERE purchase IN (SELECT id FROM purchases WHERE member = $1) ORDER BY created_at",
            "member",
        ),
        "tier": ("SELECT * FROM member_tiers WHERE member = $1", "member"),
        "tier_changes": ("SELECT * FROM tier_changes WHERE member = $1 ORDER BY at", "member"),
        "referrals": (
            "SELECT * FROM referrals WHERE referrer = $1 OR referred = $1 ORDER BY created_at",
            "member",
        ),
        "redemptions": (
            "SELECT * FROM redemptions WHERE member = $1 ORDER BY created_at",
            "member",
        ),
        "messages": (
            "SELECT * FROM member_notifications WHERE member = $1 ORDER BY created_at",
            "member",
        ),
        "contacts": ("SELECT * FROM contacts WHERE member = $1 ORDER BY occurred_at", "member"),
        "closure_requests": ("SELECT * FROM closure_requests WHERE member = $1", "member"),
    }
    export: dict[str, Any] = {"member": msgspec.to_builtins(member)}
    async with db.connection() as conn:
        for name, (sql, _) in tables.items():
            rows = await conn.fetch(sql, principal.id)
            export[name] = [
                {k: v for k, v in dict(row).items() if k not in ("request_hash", "password_hash")}
                for row in rows
            ]
    return json.loads(json.dumps(export, default=str))


async def request_closure(principal: Principal, reason: str) -> None:
    async with db.connection() as conn:
        pending = await conn.fetchval(
            "SELECT 1 FROM closure_requests WHERE member = $1 AND status = 'pending'",
            principal.id,
        )
        if pending:
            raise Conflict(i18n.gettext("Your request is already with us."), field="reason")
        await conn.execute(
            """
            INSERT INTO closure_requests (id, member, channel, reason, status, requested_at)
            VALUES (gen_random_uuid(), $1, 'portal', $2, 'pending', now())
            """,
            principal.id,
            reason[:2000],
        )


async def pending_closure(principal: Principal) -> bool:
    async with db.connection() as conn:
        return bool(
            await conn.fetchval(
                "SELECT 1 FROM closure_requests WHERE member = $1 AND status = 'pending'",
                principal.id,
            )
        )


async def send_request(principal: Principal, data: schemas.ServiceRequest) -> UUID:
    """A request or complaint from the member, into the company's contact log."""
    return await contacts.log_contact(
        principal.id,
        principal,
        kind=data.kind,
        channel="portal",
        direction="inbound",
        subject=data.subject,
        body=data.body,
    )


def problem_text(exc: DomainError) -> str:
    """A domain problem as a sentence for the member, in their language where we can."""
    return i18n.gettext(exc.detail) if exc.detail else i18n.gettext("Something went wrong.")
