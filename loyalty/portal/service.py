"""The member portal's own rules: sign-in by one-time code or password, self sign-up,
verified changes of phone or email, member API tokens and messages to the company. The
codes themselves and their rate limits are in `codes.py`; the data export and closure
requests are with the rest of privacy in `members/privacy.py`. Everything else the portal
shows comes from the domain services, called with the member as the principal (so a
member only ever reaches their own data)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType
from redis.asyncio import Redis

from loyalty.auth import PORTAL, Principal, member_principal
from loyalty.errors import Conflict, InvalidInput, NotAuthenticated
from loyalty.infrastructure import db, i18n
from loyalty.infrastructure.passwords import UNKNOWN_ACCOUNT_HASH as _DUMMY_HASH
from loyalty.infrastructure.passwords import password_hasher, password_matches
from loyalty.members import schemas as member_schemas
from loyalty.members import service as members
from loyalty.portal import codes, schemas
from loyalty.referrals import service as referrals
from loyalty.reps import contacts
from loyalty.settings import Settings
from loyalty.workflows.enrolment import enrol_member

TOKEN_PREFIX = "mbr_"
WRONG_PASSWORD = i18n.N_("That sign-in is not right.")


# --- sign-in ------------------------------------------------------------------------------


async def request_sign_in_code(raw: str, *, redis: Redis, client: str, settings: Settings) -> None:
    """Send a sign-in code if the phone or email belongs to a member; the answer is the same
    either way."""
    identifier = codes.parse_identifier(raw)
    limits = [(f"portal:send:address:{client}", codes.SENDS_PER_ADDRESS)]
    # As with guesses, someone else's requests do not stop the owner at a known address.
    if not await redis.sismember(f"portal:known:{identifier.value}", client):
        limits.append((f"portal:send:id:{identifier.value}", codes.SENDS_PER_IDENTIFIER))
    await codes.limit(redis, limits)
    member = await codes.member_by(identifier)
    if member is None:
        return
    code = await codes.new_code(
        redis, f"portal:code:sign_in:{identifier.value}", settings, {"member": str(member["id"])}
    )
    await codes.deliver_code(identifier, code, "sign_in", settings)


async def sign_in_with_code(
    raw: str, code: str, *, redis: Redis, client: str, settings: Settings
) -> Principal:
    identifier = codes.parse_identifier(raw)
    attempt = await codes.guarded(redis, client, identifier.value, sign_in=True)
    stored = await codes.take_code(redis, f"portal:code:sign_in:{identifier.value}", code, settings)
    member = await codes.member_by(identifier) if stored else None
    if stored is None or member is None or str(member["id"]) != stored["member"]:
        raise NotAuthenticated(i18n.gettext(codes.WRONG_CODE))
    await attempt.succeeded()
    return member_principal(member["id"], member["number"])


async def sign_in_with_password(
    raw: str, password: str, *, redis: Redis, client: str, settings: Settings
) -> Principal:
    identifier = codes.parse_identifier(raw)
    attempt = await codes.guarded(redis, client, identifier.value, sign_in=True)
    member = await codes.member_by(identifier)
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
    data: schemas.SignUpCreate, *, redis: Redis, client: str, settings: Settings
) -> str:
    """Check the form, then send a code to the phone or email; the member is created when
    the code comes back. Returns the token of this pending sign-up."""
    if not data.email and not data.phone:
        raise InvalidInput(i18n.gettext("Enter a phone number or an email."), field="email")
    email = members.normalise_email(data.email, "email") if data.email else None
    phone = members.normalise_phone(data.phone, "phone") if data.phone else None
    if data.referral_code:
        await referrals.find_referrer(data.referral_code)
    identifier = (
        codes.Identifier("email", email) if email else codes.Identifier("phone", phone or "")
    )
    await codes.limit(
        redis,
        [
            (f"portal:send:address:{client}", codes.SENDS_PER_ADDRESS),
            (f"portal:send:id:{identifier.value}", codes.SENDS_PER_IDENTIFIER),
        ],
    )
    token = secrets.token_urlsafe(24)
    existing = await codes.member_by(identifier)
    # The message, not the page, says whether an account exists: only the owner reads it.
    payload = {
        "form": msgspec.to_builtins(data),
        "existing": str(existing["id"]) if existing else None,
        "identifier": identifier.value,
        "verified": identifier.kind,
    }
    code = await codes.new_code(redis, f"portal:code:sign_up:{token}", settings, payload)
    await codes.deliver_code(
        identifier, code, "already_member" if existing else "sign_up", settings
    )
    return token


async def finish_sign_up(
    token: str, code: str, *, redis: Redis, client: str, settings: Settings
) -> Principal:
    attempt = await codes.guarded(redis, client, f"sign_up:{token}")
    stored = await codes.take_code(redis, f"portal:code:sign_up:{token}", code, settings)
    if stored is None:
        raise NotAuthenticated(i18n.gettext(codes.WRONG_CODE))
    await attempt.succeeded()
    if stored["existing"]:
        principal = await principal_for_member(UUID(stored["existing"]))
        if principal is None:
            raise NotAuthenticated(i18n.gettext(codes.WRONG_CODE))
        return principal
    form = msgspec.convert(stored["form"], schemas.SignUpCreate)
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
    principal: Principal,
    channels: list[str],
    decisions: dict[str, bool],
    *,
    method: str,
    language: str | UnsetType = UNSET,
) -> member_schemas.Member:
    """A member's own channel order, consent decisions and (if given) message language. A
    changed or new consent is recorded now, with `method`; an unchanged one keeps its
    original record as evidence."""
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
                channels=channels,
                consents=sorted(consents.values(), key=lambda c: c.channel),
                language=language,  # type: ignore[arg-type]
            )
        ),
        principal,
    )


async def start_contact_change(
    principal: Principal, field: str, raw: str, *, redis: Redis, settings: Settings
) -> None:
    """A new phone or email takes effect once the code sent to it comes back."""
    identifier = codes.parse_identifier(raw, field)
    if identifier.kind != field:
        raise InvalidInput(i18n.gettext("This is not a valid value here."), field=field)
    if await codes.member_by(identifier) is not None:
        raise Conflict(i18n.gettext("This is already registered to an account."), field=field)
    key = f"portal:send:id:{identifier.value}"
    await codes.limit(redis, [(key, codes.SENDS_PER_IDENTIFIER)])
    code = await codes.new_code(
        redis,
        f"portal:code:change:{principal.id}",
        settings,
        {"field": field, "value": identifier.value},
    )
    await codes.deliver_code(identifier, code, "change", settings)


async def confirm_contact_change(
    principal: Principal, code: str, *, redis: Redis, client: str, settings: Settings
) -> member_schemas.Member:
    attempt = await codes.guarded(redis, client, f"change:{principal.id}")
    stored = await codes.take_code(redis, f"portal:code:change:{principal.id}", code, settings)
    if stored is None:
        raise NotAuthenticated(i18n.gettext(codes.WRONG_CODE))
    await attempt.succeeded()
    update = member_schemas.MemberUpdate(**{stored["field"]: stored["value"]})
    return await members.update_member(principal.id, update, principal)


# --- the company's service line ----------------------------------------------------------


async def send_request(principal: Principal, data: schemas.ServiceRequestCreate) -> UUID:
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
