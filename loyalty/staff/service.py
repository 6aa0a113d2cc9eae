"""Staff accounts, sign-in, bearer tokens and integration API keys.

Secrets (passwords, tokens, keys) are never stored: passwords as argon2id hashes, tokens
and keys as SHA-256 digests (they are long random strings, so a fast hash is enough).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from litestar.stores.base import Store
from msgspec import UNSET
from redis.asyncio import Redis

from loyalty.audit import service as audit
from loyalty.auth import API_KEY_SCOPES, ROLES, Principal, staff_principal
from loyalty.errors import Conflict, InvalidInput, NotAuthenticated, NotFound, RateLimited
from loyalty.infrastructure import db, ratelimit
from loyalty.infrastructure.caches import KeyedCache
from loyalty.infrastructure.clock import now
from loyalty.infrastructure.passwords import (
    UNKNOWN_ACCOUNT_HASH,
    password_hasher,
    password_matches,
)
from loyalty.settings import Settings
from loyalty.staff import schemas
from loyalty.staff.tables import ApiKey, Staff, StaffToken

MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "lst_"
API_KEY_PREFIX = "lk_"
SIGN_IN_REFUSED = "unknown username or wrong password"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_password_policy(password: str, username: str = "") -> None:
    """Refuse short or guessable passwords, naming the reason."""
    from zxcvbn import zxcvbn  # loaded on demand: its word lists are large

    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"must be at least {MIN_PASSWORD_LENGTH} characters long", field="password"
        )
    if len(password) > 128:
        raise InvalidInput("must be at most 128 characters long", field="password")
    # Scoring is super-linear in length; the first 64 characters decide commonness anyway.
    result = zxcvbn(password[:64], user_inputs=[username] if username else [])
    if result["score"] < 3:
        warning = result["feedback"].get("warning") or "it is too easy to guess"
        raise InvalidInput(
            f"is too common or guessable ({warning.rstrip('.')}); choose a longer, rarer one",
            field="password",
        )


def generate_password() -> str:
    words = secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
    return f"{words[:4]}-{words[4:8]}-{words[8:12]}-{words[12:]}"


def to_schema(staff: Staff | dict) -> schemas.Staff:
    row = staff if isinstance(staff, dict) else staff.to_dict()
    return db.from_row(schemas.Staff, row, level=row.get("level") or "regular")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInput(f"must be one of {', '.join(ROLES)}", field="role")


async def create_staff(data: schemas.StaffCreate) -> schemas.StaffCreated:
    username = data.username.lower()
    _check_role(data.role)
    generated = data.password is None
    password = generate_password() if generated else data.password
    check_password_policy(password, username)
    if await Staff.exists().where(Staff.username == username):
        raise Conflict(f"the username {username!r} is taken", field="username")
    staff = Staff(
        username=username,
        display_name=data.display_name or username,
        role=data.role,
        department=data.department,
        level=data.level,
        password_hash=password_hasher.hash(password),
    )
    async with db.transaction():
        await staff.save()
        await audit.record("staff.create", "staff", staff.id, after=staff.to_dict())
    return schemas.StaffCreated(staff=to_schema(staff), password=password if generated else None)


async def get_staff(staff_id: UUID) -> Staff:
    staff = await Staff.objects().where(Staff.id == staff_id).first()
    if staff is None:
        raise NotFound("no staff user with that id")
    return staff


async def list_staff(department: str | None = None) -> list[schemas.Staff]:
    query = Staff.select().order_by(Staff.username)
    if department is not None:
        query = query.where(Staff.department == department)
    return [to_schema(row) for row in await query]


@dataclass(frozen=True)
class StaffChange:
    """What an update did that callers act on: `before` is the user as they were."""

    before: Staff
    leaving: bool
    moving: bool
    ends_access: bool

    @property
    def rep_goes(self) -> bool:
        """A rep who leaves or changes department: their members must be handed over."""
        return self.before.role == "rep" and (self.leaving or self.moving)


async def apply_update(
    staff_id: UUID, data: schemas.StaffUpdate, *, actor: Principal
) -> StaffChange:
    """Save a partial update of a staff user. Ending sessions and handing over a leaving
    rep's members are the caller's (`loyalty.workflows.staff_changes.update_staff`)."""
    staff = await get_staff(staff_id)
    changes: dict = {}
    if data.display_name is not UNSET:
        changes[Staff.display_name] = data.display_name
    if data.role is not UNSET:
        _check_role(data.role)
        changes[Staff.role] = data.role
    if data.department is not UNSET:
        changes[Staff.department] = data.department
    if data.level is not UNSET:
        changes[Staff.level] = data.level
    if data.password is not UNSET:
        check_password_policy(data.password, staff.username)
        changes[Staff.password_hash] = password_hasher.hash(data.password)
    ends_access = False
    if data.active is not UNSET and data.active != staff.active:
        if not data.active and staff.id == actor.id:
            raise InvalidInput("you cannot deactivate yourself", field="active")
        changes[Staff.active] = data.active
        changes[Staff.deactivated_at] = None if data.active else now()
        ends_access = not data.active
    # A new password or a role change also ends old sessions: they carried the old trust.
    ends_access = ends_access or Staff.password_hash in changes or Staff.role in changes
    if changes:
        async with db.transaction():
            after = (
                await Staff.update(changes)
                .where(Staff.id == staff_id)
                .returning(*Staff.all_columns())
            )
            await audit.record(
                "staff.deactivate" if ends_access and Staff.active in changes else "staff.update",
                "staff",
                staff_id,
                before=staff.to_dict(),
                after=after[0] if after else None,
            )
    return StaffChange(
        before=staff,
        leaving=Staff.active in changes and not data.active,
        moving=Staff.department in changes and data.department != staff.department,
        ends_access=ends_access,
    )


# --- sign-in ------------------------------------------------------------------------------


async def authenticate(
    username: str, password: str, *, client: str, redis: Redis, settings: Settings
) -> Staff:
    """Check a username and password, under per-account and per-address attempt limits.

    An unknown user and a wrong password get the same answer in about the same time.
    """
    username = username.strip().lower()
    attempt = ratelimit.SignInAttempt(
        redis,
        client=client,
        account_key=f"signin:account:{username}",
        address_key=f"signin:address:{client}",
        known_key=f"signin:known:{username}",
        account_limit=settings.login_attempts_per_account,
        address_limit=settings.login_attempts_per_address,
        window_seconds=settings.login_window_seconds,
    )
    wait = await attempt.begin()
    if wait:
        raise RateLimited(
            f"too many sign-in attempts; try again in {wait} seconds", retry_after=wait
        )
    staff = await Staff.objects().where(Staff.username == username).first()
    if not await password_matches(
        staff.password_hash if staff else UNKNOWN_ACCOUNT_HASH, password
    ) or (staff is None or not staff.active):
        raise NotAuthenticated(SIGN_IN_REFUSED)
    await attempt.succeeded()
    if password_hasher.check_needs_rehash(staff.password_hash):
        await Staff.update({Staff.password_hash: password_hasher.hash(password)}).where(
            Staff.id == staff.id
        )
    return staff


async def principal_for_staff_id(staff_id: UUID) -> Principal | None:
    row = (
        await Staff.select(Staff.id, Staff.username, Staff.role, Staff.department)
        .where((Staff.id == staff_id) & (Staff.active == True))  # noqa: E712
        .first()
    )
    if row is None:
        return None
    return staff_principal(row["id"], row["username"], row["role"], row["department"])


# --- console sessions ---------------------------------------------------------------------


def _sessions_key(staff_id: UUID) -> str:
    return f"staff-sessions:{staff_id}"


async def remember_session(staff_id: UUID, session_id: str, *, redis: Redis, ttl: int) -> None:
    """Track a staff user's session ids, so deactivation can end every one of them."""
    key = _sessions_key(staff_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.sadd(key, session_id)
        pipe.expire(key, ttl)
        await pipe.execute()


async def end_all_sessions(staff_id: UUID, *, redis: Redis, session_store: Store) -> None:
    key = _sessions_key(staff_id)
    for session_id in await redis.smembers(key):
        await session_store.delete(
            session_id.decode() if isinstance(session_id, bytes) else session_id
        )
    await redis.delete(key)
    await StaffToken.update({StaffToken.revoked_at: now()}).where(
        (StaffToken.staff == staff_id) & StaffToken.revoked_at.is_null()
    )


# --- bearer tokens ------------------------------------------------------------------------


async def issue_token(staff: Staff, *, settings: Settings) -> schemas.Token:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now() + timedelta(hours=settings.token_ttl_hours)
    await StaffToken(staff=staff.id, token_hash=digest(token), expires_at=expires_at).save()
    return schemas.Token(
        token=token, token_type="Bearer", expires_at=expires_at, staff=to_schema(staff)
    )


async def principal_for_token(token: str) -> Principal | None:
    rows = await StaffToken.raw(
        """
        UPDATE staff_tokens t SET last_used_at = now()
        FROM staff s
        WHERE t.token_hash = {} AND t.staff = s.id AND s.active
          AND t.revoked_at IS NULL AND t.expires_at > now()
        RETURNING s.id, s.username, s.role, s.department
        """,
        digest(token),
    )
    if not rows:
        return None
    row = rows[0]
    return staff_principal(row["id"], row["username"], row["role"], row["department"])


async def revoke_token(token: str) -> None:
    await StaffToken.update({StaffToken.revoked_at: now()}).where(
        (StaffToken.token_hash == digest(token)) & StaffToken.revoked_at.is_null()
    )


async def prune_expired_tokens(older_than: timedelta = timedelta(days=7)) -> int:
    """Delete tokens that expired or were revoked more than `older_than` ago."""
    cutoff = now() - older_than
    deleted = (
        await StaffToken.delete()
        .where((StaffToken.expires_at < cutoff) | (StaffToken.revoked_at < cutoff))
        .returning(StaffToken.id)
    )
    return len(deleted)


# --- API keys -----------------------------------------------------------------------------

_SCOPE_PATTERN = re.compile(r"^[a-z_]+:[a-z_]+$")


def _api_key_schema(row: dict) -> schemas.ApiKey:
    return db.from_row(schemas.ApiKey, row)


async def create_api_key(
    data: schemas.ApiKeyCreate, *, created_by: UUID | None
) -> schemas.ApiKeyCreated:
    scopes = sorted(set(data.scopes))
    for scope in scopes:
        if not _SCOPE_PATTERN.match(scope) or scope not in API_KEY_SCOPES:
            raise InvalidInput(
                f"unknown scope {scope!r}; allowed: {', '.join(sorted(API_KEY_SCOPES))}",
                field="scopes",
            )
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=data.name,
        prefix=key[:10],
        key_hash=digest(key),
        scopes=scopes,
        created_by=created_by,
    )
    async with db.transaction():
        await row.save()
        await audit.record("api_keys.create", "api_key", row.id, after=row.to_dict())
    return schemas.ApiKeyCreated(api_key=_api_key_schema(row.to_dict()), key=key)


async def list_api_keys() -> list[schemas.ApiKey]:
    rows = await ApiKey.select().order_by(ApiKey.created_at, ascending=False)
    return [_api_key_schema(row) for row in rows]


async def revoke_api_key(key_id: UUID) -> schemas.ApiKey:
    async with db.transaction():
        rows = (
            await ApiKey.update({ApiKey.revoked_at: now()})
            .where((ApiKey.id == key_id) & ApiKey.revoked_at.is_null())
            .returning(*ApiKey.all_columns())
        )
        if rows:
            await audit.record("api_keys.revoke", "api_key", key_id, after=rows[0])
    _api_key_checks.clear()  # this process stops taking it at once
    if not rows:
        row = await ApiKey.select().where(ApiKey.id == key_id).first()
        if row is None:
            raise NotFound("no API key with that id")
        return _api_key_schema(row)
    return _api_key_schema(rows[0])


# A key's check is kept this long in each web process, so a busy till does not cost a
# database round trip per call. A revoked key therefore stops working within this time in
# the other processes (at once in the one that revoked it).
API_KEY_CHECK_SECONDS = 2.0
API_KEY_CHECKS_KEPT = 1000
_api_key_checks: KeyedCache[str, Principal] = KeyedCache("API key checks", kept=API_KEY_CHECKS_KEPT)


async def principal_for_api_key(key: str) -> Principal | None:
    hashed = digest(key)
    checked = _api_key_checks.get(hashed, API_KEY_CHECK_SECONDS)
    if checked is not None:
        return checked
    principal = await _principal_for_key_hash(hashed)
    if principal is None:
        _api_key_checks.discard(hashed)  # unknown keys are not kept: they cost a lookup
    else:
        _api_key_checks.put(hashed, principal)
    return principal


async def _principal_for_key_hash(hashed: str) -> Principal | None:
    # The last use is recorded at most once a minute per key, so a busy POS does not write
    # on every check.
    async with db.connection() as conn:
        row = await conn.fetchrow(
            """
            WITH key AS (
                SELECT id, name, scopes, last_used_at FROM api_keys
                WHERE key_hash = $1 AND revoked_at IS NULL
            ), touched AS (
                UPDATE api_keys SET last_used_at = now()
                WHERE id IN (SELECT id FROM key WHERE last_used_at IS NULL
                                OR last_used_at < now() - interval '1 minute')
            )
            SELECT id, name, scopes FROM key
            """,
            hashed,
        )
    if row is None:
        return None
    return Principal(
        kind="api_key",
        id=row["id"],
        label=f"api_key:{row['name']}",
        permissions=frozenset(row["scopes"]),
    )


async def principal_for_bearer(secret: str) -> Principal | None:
    if secret.startswith(API_KEY_PREFIX):
        return await principal_for_api_key(secret)
    if secret.startswith(TOKEN_PREFIX):
        return await principal_for_token(secret)
    return None
