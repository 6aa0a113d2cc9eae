"""Points expiry warnings: members with points expiring within `days_before` days (30) are
told once per expiry month, through their preferred consented channel and in the portal
inbox, how many points expire and by when.

The daily job walks `points.expiring_before` in member order. For each batch one statement
picks each member's channel (as offers do: the first preferred channel with consent and an
address, else the inbox alone) and inserts the warnings with `ON CONFLICT (member, month)
DO NOTHING`; only the rows it inserted get an inbox entry (same transaction) and, after
commit, an email or text message. A rerun, or two runs at once, tell nobody twice. A failed
email or text is tried again by the next runs (`MAX_ATTEMPTS` in all) while the points have
not expired and the member still consents there. Warnings are service messages: the
marketing frequency cap does not hold them back."""

from __future__ import annotations

import asyncio
import logging
import string
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID, uuid4

import msgspec

from loyalty.auth import Principal
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.infrastructure import db, i18n, messaging
from loyalty.infrastructure.clock import now
from loyalty.infrastructure.i18n import N_
from loyalty.marketing.delivery import CHANNEL_SQL, CONCURRENCY
from loyalty.marketing.messages import email, sms
from loyalty.marketing.unsubscribe import unsubscribe_url
from loyalty.points import service as points

log = logging.getLogger("loyalty.marketing")
BATCH_SIZE = 500
PLACEHOLDERS = ("points", "date", "first_date")
SAMPLE_POINTS = 1200

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Body = Annotated[str, msgspec.Meta(min_length=1, max_length=1500)]


class ExpiryWarningSettings(msgspec.Struct):
    enabled: bool
    days_before: int
    title_en: str
    title_zh: str
    body_en: str
    body_zh: str
    updated_at: datetime | None = None
    updated_by: str = "system"


class ExpiryWarningSettingsUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """The texts may use {points} (how many expire), {date} (the day the last of them
    expires) and {first_date} (the day the first of them does)."""

    enabled: bool
    days_before: Annotated[int, msgspec.Meta(ge=1, le=90)]
    title_en: Title
    title_zh: Title
    body_en: Body
    body_zh: Body


class ExpiryWarningRun(msgspec.Struct):
    id: UUID
    started_at: datetime
    finished_at: datetime | None
    enabled: bool
    warned: int
    emails: int
    texts: int
    failed: int


DEFAULTS = ExpiryWarningSettings(
    enabled=True,
    days_before=30,
    title_en="Your points expire soon",
    title_zh="您的积分即将过期",
    body_en="{points} of your points expire by {date}. Spend them on a reward before then.",
    body_zh="您有 {points} 积分将于 {date} 前过期，请在此之前兑换礼品。",
)


# --- settings -----------------------------------------------------------------------------


async def get_settings() -> ExpiryWarningSettings:
    """The settings; the defaults until marketing first saves them."""
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM expiry_warning_settings WHERE id = 1")
    if row is None:
        return DEFAULTS
    return msgspec.convert(
        {k: v for k, v in dict(row).items() if k != "id"}, ExpiryWarningSettings, strict=False
    )


def check_text(text: str, field: str) -> None:
    """A text may use the placeholders and nothing else in braces."""
    try:
        fields = [f for f in string.Formatter().parse(text) if f[1] is not None]
    except ValueError:
        raise InvalidInput(
            N_("has a brace without its pair: write {points}, {date} or {first_date}"),
            field=field,
        ) from None
    if any(name not in PLACEHOLDERS or spec or conversion for _, name, spec, conversion in fields):
        raise InvalidInput(
            N_("may only use the placeholders {points}, {date} and {first_date}"), field=field
        )


async def update_settings(
    data: ExpiryWarningSettingsUpdate, principal: Principal
) -> ExpiryWarningSettings:
    """Switch the warnings on or off and change their texts (offers:approve)."""
    if not principal.can("offers:approve"):
        raise PermissionDenied("this needs the offers:approve permission")
    for field in ("title_en", "title_zh", "body_en", "body_zh"):
        value = getattr(data, field).strip()
        if not value:
            raise InvalidInput(N_("is required"), field=field)
        setattr(data, field, value)
        check_text(value, field)
    async with db.connection() as conn:
        await conn.execute(
            """
            INSERT INTO expiry_warning_settings (id, enabled, days_before, title_en, title_zh,
                body_en, body_zh, updated_at, updated_by)
            VALUES (1, $1, $2, $3, $4, $5, $6, now(), $7)
            ON CONFLICT (id) DO UPDATE SET enabled = excluded.enabled,
                days_before = excluded.days_before, title_en = excluded.title_en,
                title_zh = excluded.title_zh, body_en = excluded.body_en,
                body_zh = excluded.body_zh, updated_at = now(), updated_by = excluded.updated_by
            """,
            data.enabled,
            data.days_before,
            data.title_en,
            data.title_zh,
            data.body_en,
            data.body_zh,
            principal.label,
        )
    return await get_settings()


# --- the message --------------------------------------------------------------------------


def render(
    settings: ExpiryWarningSettings | ExpiryWarningSettingsUpdate,
    language: str,
    points_left: int,
    first_at: datetime,
    last_at: datetime,
) -> tuple[str, str]:
    """The warning's title and body in `language`, numbers and dates written its way."""
    zh = language == "zh"
    with i18n.speaking("zh" if zh else "en"):
        values = {
            "points": i18n.number(points_left),
            "date": i18n.day(last_at),
            "first_date": i18n.day(first_at),
        }
    title = settings.title_zh if zh else settings.title_en
    body = settings.body_zh if zh else settings.body_en
    return title.format_map(values)[:200], body.format_map(values)[:1900]


def preview(
    settings: ExpiryWarningSettings | ExpiryWarningSettingsUpdate, language: str
) -> tuple[str, str]:
    """What a member would read today, for a sample of points expiring `days_before` on."""
    last = now() + timedelta(days=settings.days_before)
    return render(settings, language, SAMPLE_POINTS, now() + timedelta(days=1), last)


# --- the daily run ------------------------------------------------------------------------

CLAIM_SQL = f"""
WITH given AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::timestamptz[],
                         $5::timestamptz[]) AS g(member, month, points, first_at, last_at)
), picked AS (
    SELECT g.*, {CHANNEL_SQL} AS channel, m.email, m.phone,
           coalesce(m.contact_preferences->>'language', $7) AS language
    FROM given g JOIN members m ON m.id = g.member AND m.status = 'active'
)
INSERT INTO expiry_warnings (id, member, month, points, first_at, last_at, channel, address,
    language, status, attempts, run, created_at)
SELECT gen_random_uuid(), p.member, p.month, p.points, p.first_at, p.last_at, p.channel,
       CASE p.channel WHEN 'email' THEN p.email WHEN 'sms' THEN p.phone END,
       CASE WHEN p.language IN ('en', 'zh') THEN p.language ELSE $7 END,
       CASE WHEN p.channel = 'portal' THEN 'sent' ELSE 'sending' END, 0, $6, now()
FROM picked p
ON CONFLICT (member, month) DO NOTHING
RETURNING id, member, month, points, first_at, last_at, channel, address, language, status
"""

INBOX_SQL = """
INSERT INTO member_notifications (id, member, event, kind, title, body, title_zh, body_zh,
    created_at)
SELECT gen_random_uuid(), v.member, v.warning, 'points.expiring', v.title, v.body,
       v.title_zh, v.body_zh, now()
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
    AS v(warning, member, title, body, title_zh, body_zh)
ON CONFLICT (event) DO NOTHING
"""


async def _claim(
    batch: list[points.ExpiringPoints], settings: ExpiryWarningSettings, run_id: UUID
) -> list[dict[str, Any]]:
    """Insert the batch's warnings (each member and month once) and their inbox entries in
    one transaction; returns the warnings inserted now."""
    async with db.transaction() as conn:
        rows = [
            dict(row)
            for row in await conn.fetch(
                CLAIM_SQL,
                [e.member for e in batch],
                [e.month for e in batch],
                [e.points for e in batch],
                [e.first_at for e in batch],
                [e.last_at for e in batch],
                run_id,
                i18n.DEFAULT,
            )
        ]
        if rows:
            texts = [
                render(settings, language, r["points"], r["first_at"], r["last_at"])
                for r in rows
                for language in ("en", "zh")
            ]
            await conn.execute(
                INBOX_SQL,
                [r["id"] for r in rows],
                [r["member"] for r in rows],
                [t[0] for t in texts[0::2]],
                [t[1] for t in texts[0::2]],
                [t[0] for t in texts[1::2]],
                [t[1] for t in texts[1::2]],
            )
    return rows


async def _send_one(
    row: dict[str, Any], settings: ExpiryWarningSettings, sender: Any
) -> str | None:
    """None when sent; otherwise the error."""
    language = row["language"]
    title, body = render(settings, language, row["points"], row["first_at"], row["last_at"])
    try:
        if row["channel"] == "email":
            link = unsubscribe_url(row["member"], "email")
            await messaging.send_email(email(row["address"], title, body, link, language))
        else:
            await sender.send(row["address"], sms(f"{title}: {body}", row["member"], language))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    return None


async def _send(rows: list[dict[str, Any]], settings: ExpiryWarningSettings, sender: Any) -> int:
    """Send the claimed warnings and record each outcome; returns how many failed."""
    rows = [r for r in rows if r["status"] == "sending"]
    if not rows:
        return 0
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(row: dict[str, Any]) -> str | None:
        async with limit:
            return await _send_one(row, settings, sender)

    errors = await asyncio.gather(*(one(row) for row in rows))
    async with db.connection() as conn:
        await conn.execute(
            """
            UPDATE expiry_warnings w SET
                status = CASE WHEN v.error IS NULL THEN 'sent' ELSE 'failed' END,
                sent_at = CASE WHEN v.error IS NULL THEN now() END,
                attempts = w.attempts + 1,
                error = v.error
            FROM unnest($1::uuid[], $2::text[]) AS v(id, error)
            WHERE w.id = v.id AND w.status = 'sending'
            """,
            [r["id"] for r in rows],
            list(errors),
        )
    failed = sum(1 for e in errors if e is not None)
    if failed:
        log.warning("%d of %d expiry warnings failed to send", failed, len(rows))
    return failed


# Failed warnings whose points have not expired yet, tried again while the member still
# consents to that channel at that address (else they stay failed, for good).
CLAIM_RETRIES_SQL = """
WITH due AS (
    SELECT id FROM expiry_warnings
    WHERE status = 'failed' AND attempts < $1 AND last_at > $2 AND id > $4
    ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED
), checked AS (
    SELECT w.id,
           m.status = 'active'
           AND w.address IS NOT DISTINCT FROM
               CASE w.channel WHEN 'email' THEN m.email WHEN 'sms' THEN m.phone END
           AND m.contact_preferences->'consents'
               @> jsonb_build_array(jsonb_build_object('channel', w.channel, 'granted', true))
           AS reachable
    FROM due JOIN expiry_warnings w ON w.id = due.id JOIN members m ON m.id = w.member
)
UPDATE expiry_warnings w SET
    status = CASE WHEN c.reachable THEN 'sending' ELSE 'failed' END,
    attempts = CASE WHEN c.reachable THEN w.attempts ELSE $1 END,
    error = CASE WHEN c.reachable THEN w.error ELSE 'member no longer reachable there' END,
    run = CASE WHEN c.reachable THEN $5 ELSE w.run END  -- counted in this run's figures
FROM checked c WHERE w.id = c.id
RETURNING w.id, w.member, w.month, w.points, w.first_at, w.last_at, w.channel, w.address,
          w.language, w.status
"""
MAX_ATTEMPTS = 3


async def _retry(
    settings: ExpiryWarningSettings, sender: Any, at: datetime, run_id: UUID, batch_size: int
) -> int:
    """Send failed warnings again, once each per run (at most `MAX_ATTEMPTS` in all);
    returns how many failed again."""
    failed = 0
    cursor = UUID(int=0)
    while True:
        async with db.transaction() as conn:
            rows = [
                dict(r)
                for r in await conn.fetch(
                    CLAIM_RETRIES_SQL, MAX_ATTEMPTS, at, batch_size, cursor, run_id
                )
            ]
        if not rows:
            return failed
        cursor = max(r["id"] for r in rows)
        failed += await _send(rows, settings, sender)


async def run(
    *, at: datetime | None = None, sms_sender: Any = None, batch_size: int = BATCH_SIZE
) -> int:
    """Warn every member with points expiring within `days_before` days, once per member and
    expiry month; returns how many were warned now (0 when switched off). Safe to rerun."""
    at = at or now()
    settings = await get_settings()
    run_id = uuid4()
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO expiry_warning_runs (id, started_at, enabled) VALUES ($1, now(), $2)",
            run_id,
            settings.enabled,
        )
    warned = failed = 0
    if settings.enabled:
        sender = sms_sender or messaging.sms_sender()
        failed = await _retry(settings, sender, at, run_id, batch_size)
        before = at + timedelta(days=settings.days_before)
        cursor: UUID | None = None
        while True:
            batch = await points.expiring_before(before, at=at, after=cursor, limit=batch_size)
            if not batch:
                break
            cursor = batch[-1].member
            rows = await _claim(batch, settings, run_id)
            warned += len(rows)
            failed += await _send(rows, settings, sender)
    async with db.connection() as conn:
        await conn.execute(
            """
            UPDATE expiry_warning_runs r SET finished_at = now(), warned = $2, failed = $3,
                emails = (SELECT count(*) FROM expiry_warnings
                          WHERE run = $1 AND channel = 'email' AND status = 'sent'),
                texts = (SELECT count(*) FROM expiry_warnings
                         WHERE run = $1 AND channel = 'sms' AND status = 'sent')
            WHERE r.id = $1
            """,
            run_id,
            warned,
            failed,
        )
    return warned


async def last_runs(limit: int = 10) -> list[ExpiryWarningRun]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT * FROM expiry_warning_runs ORDER BY started_at DESC LIMIT $1", limit
        )
    return [msgspec.convert(dict(row), ExpiryWarningRun, strict=False) for row in rows]
