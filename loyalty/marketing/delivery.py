"""Sending an offer: snapshot the audience, then deliver in batches, each member once.

1. The snapshot is one `INSERT ... SELECT` into `offer_audience` (keyed by offer and
   member), built from the offer's target tiers and segment filter. A second run adds
   nobody twice.
2. Each batch walks the audience in member order from the offer's cursor. One statement
   picks each member's channel (the first of their preferred channels that has consent and
   an address; else the portal inbox alone), applies the frequency cap (marketing messages
   in the last `cap_days`, counted in SQL) and inserts the deliveries with `ON CONFLICT
   (offer, member) DO NOTHING`: only rows it inserted are sent, so a retried or doubled
   job sends nothing twice. The portal inbox entries are inserted in the same transaction
   (keyed by the delivery id), and the cursor moves on.
3. After commit the batch's emails and text messages go out; each delivery is marked sent
   or failed. A failed one is retried with exponential backoff up to `max_attempts`. A
   delivery claimed but never marked (the worker died mid-send) stays `sending`: it is
   reported, never sent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from uuid import UUID

from loyalty.infrastructure import db, messaging
from loyalty.infrastructure.clock import now
from loyalty.marketing import bonus, segments
from loyalty.marketing.messages import code_line, email_for, inbox_text, sms_for
from loyalty.marketing.schemas import SegmentFilter

log = logging.getLogger("loyalty.marketing")
BATCH_SIZE = 500
CONCURRENCY = 20  # messages in flight at once


# --- the audience -------------------------------------------------------------------------


def audience_query(offer: Any, f: SegmentFilter, start: int = 2) -> segments.Query:
    q = segments.where_clause(f, now(), start=start)
    if offer["target_tiers"]:
        q.add(
            "EXISTS (SELECT 1 FROM member_tiers tt WHERE tt.member = m.id"
            f" AND tt.tier = ANY({q.param(list(offer['target_tiers']), '::text[]')}))"
        )
    return q


async def offer_filter(conn: Any, offer: Any) -> SegmentFilter:
    if offer["audience_filter"] is not None:
        return segments.decode_filter(offer["audience_filter"])
    if offer["segment"] is not None:
        return await segments.load_filter(conn, offer["segment"])
    return SegmentFilter()


async def snapshot(offer_id: UUID) -> int:
    """Take the offer's audience once; later calls return its size."""
    async with db.transaction() as conn:
        offer = await conn.fetchrow("SELECT * FROM offers WHERE id = $1 FOR UPDATE", offer_id)
        if offer is None or offer["status"] not in ("approved", "sending", "sent"):
            return 0
        if offer["snapshot_at"] is not None and offer["template"] is None:
            return offer["audience_size"] or 0
        if offer["valid_until"] is not None and offer["valid_until"] <= now():
            return 0  # its validity ended before it was sent: nobody is offered it now
        f = await offer_filter(conn, offer)
        q = audience_query(offer, f)
        status = await conn.execute(
            f"""
            INSERT INTO offer_audience (offer, member)
            SELECT $1, m.id FROM {segments.from_clause(q)} WHERE {q.where}
            ON CONFLICT DO NOTHING
            """,
            offer_id,
            *q.params,
        )
        if offer["snapshot_at"] is None:
            # The first snapshot (in this transaction): its size is what it inserted.
            size = int(status.split()[-1])
        else:  # an automatic offer's instance grows month by month
            size = await conn.fetchval(
                "SELECT count(*) FROM offer_audience WHERE offer = $1", offer_id
            )
        await conn.execute(
            """
            UPDATE offers SET status = 'sending', audience_filter = $2::jsonb,
                audience_size = $3, snapshot_at = now(),
                -- An automatic offer's instance grows: walk it again from the start.
                cursor = CASE WHEN template IS NULL THEN cursor END
            WHERE id = $1
            """,
            offer_id,
            segments.encode_filter(f),
            size,
        )
    if offer["benefit"] == "bonus_points":
        bonus.forget()
    return size


async def _send_one(offer: Any, row: dict[str, Any], sms: Any) -> str | None:
    """None when sent; otherwise the error."""
    try:
        if row["channel"] == "email":
            await messaging.send_email(email_for(offer, row))
        else:
            await sms.send(row["address"], sms_for(offer, row))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    return None


async def _send(offers: dict[UUID, Any], rows: list[dict[str, Any]], sms: Any) -> int:
    """Send the claimed deliveries and record each outcome; returns how many failed."""
    if not rows:
        return 0
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(row: dict[str, Any]) -> str | None:
        async with limit:
            return await _send_one(offers[UUID(str(row["offer"]))], row, sms)

    errors = await asyncio.gather(*(one(row) for row in rows))
    settings = await _settings()
    async with db.connection() as conn:
        await conn.execute(
            """
            UPDATE offer_deliveries d SET
                status = CASE WHEN v.error IS NULL THEN 'sent' ELSE 'failed' END,
                sent_at = CASE WHEN v.error IS NULL THEN now() END,
                attempts = d.attempts + 1,
                error = v.error,
                next_attempt_at = CASE
                    WHEN v.error IS NULL OR d.attempts + 1 >= $3 THEN NULL
                    ELSE now() + make_interval(secs => $4 * power(2, d.attempts)) END
            FROM unnest($1::uuid[], $2::text[]) AS v(id, error)
            WHERE d.id = v.id AND d.status = 'sending'
            """,
            [UUID(str(row["id"])) for row in rows],
            list(errors),
            settings["max_attempts"],
            settings["retry_seconds"],
        )
    failed = sum(1 for e in errors if e is not None)
    if failed:
        log.warning("%d of %d offer messages failed; they will be retried", failed, len(rows))
    return failed


async def _settings() -> Any:
    async with db.connection() as conn:
        return await conn.fetchrow("SELECT * FROM marketing_settings WHERE id = 1")


# The channel: the first preferred channel with consent and an address, else the inbox.
CHANNEL_SQL = """
coalesce((
    SELECT c.ch FROM jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(m.contact_preferences->'channels') = 'array'
             THEN m.contact_preferences->'channels' ELSE '[]'::jsonb END
    ) WITH ORDINALITY AS c(ch, i)
    WHERE ((c.ch = 'email' AND m.email IS NOT NULL) OR (c.ch = 'sms' AND m.phone IS NOT NULL))
      AND m.contact_preferences->'consents'
          @> jsonb_build_array(jsonb_build_object('channel', c.ch, 'granted', true))
    ORDER BY c.i LIMIT 1
), 'portal')
"""

BATCH_SQL = f"""
WITH batch AS (
    SELECT a.member FROM offer_audience a
    WHERE a.offer = $1 AND a.member > $2 ORDER BY a.member LIMIT $3
), picked AS (
    SELECT m.id AS member, {CHANNEL_SQL} AS channel, m.email, m.phone,
           m.contact_preferences->>'language' AS language
    FROM batch b JOIN members m ON m.id = b.member AND m.status = 'active'
), capped AS (
    SELECT p.*, p.channel <> 'portal' AND (
        SELECT count(*) FROM offer_deliveries d
        WHERE d.member = p.member AND d.channel IN ('email', 'sms')
          AND d.status IN ('sending', 'sent', 'failed')
          AND d.created_at > now() - make_interval(days => $4)
    ) >= $5 AS over_cap
    FROM picked p
), inserted AS (
    INSERT INTO offer_deliveries (id, offer, member, channel, address, status, attempts,
        created_at)
    SELECT gen_random_uuid(), $1, c.member,
           CASE WHEN c.over_cap THEN 'portal' ELSE c.channel END,
           CASE WHEN c.over_cap THEN NULL WHEN c.channel = 'email' THEN c.email
                WHEN c.channel = 'sms' THEN c.phone END,
           CASE WHEN c.over_cap THEN 'capped' WHEN c.channel = 'portal' THEN 'sent'
                ELSE 'sending' END,
           0, now()
    FROM capped c
    ON CONFLICT (offer, member) DO NOTHING
    RETURNING id, offer, member, channel, address, status
)
SELECT (SELECT member FROM batch ORDER BY member DESC LIMIT 1) AS last,
       (SELECT coalesce(json_agg(to_jsonb(i) || jsonb_build_object('language', p.language)),
                        '[]'::json)
        FROM inserted i JOIN picked p ON p.member = i.member) AS rows
"""

VOUCHER_SQL = """
WITH need AS (
    SELECT d.id, d.member, row_number() OVER (ORDER BY d.member) AS rn
    FROM offer_deliveries d WHERE d.id = ANY($2::uuid[])
), free AS (
    SELECT f.id, row_number() OVER (ORDER BY f.imported_at, f.id) AS rn FROM (
        SELECT id, imported_at FROM offer_vouchers WHERE offer = $1 AND member IS NULL
        ORDER BY imported_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
    ) f
), taken AS (
    UPDATE offer_vouchers v SET member = need.member
    FROM need JOIN free USING (rn) WHERE v.id = free.id
    RETURNING need.id AS delivery, v.code
)
UPDATE offer_deliveries d SET voucher_code = taken.code
FROM taken WHERE d.id = taken.delivery
RETURNING d.id, d.voucher_code
"""

# The inbox entry in both languages (the Chinese where the offer has it), the voucher code
# line in each.
INBOX_SQL = """
INSERT INTO member_notifications (id, member, event, kind, title, body, title_zh, body_zh,
    created_at)
SELECT gen_random_uuid(), d.member, d.id, 'offer', $2,
       $3 || coalesce($6 || d.voucher_code, ''),
       $4, $5 || coalesce($7 || d.voucher_code, ''), now()
FROM offer_deliveries d WHERE d.id = ANY($1::uuid[])
ON CONFLICT (event) DO NOTHING
"""


async def deliver_batch(
    offer: Any, cursor: UUID | None, batch_size: int
) -> tuple[UUID | None, list[dict[str, Any]]]:
    """Claim the next batch: deliveries inserted (unique per member), vouchers taken, inbox
    entries written and the cursor moved, in one transaction. Returns (last member, rows
    to send now)."""
    settings = await _settings()
    title, body, title_zh, body_zh = inbox_text(offer)
    async with db.transaction() as conn:
        # Two offers sending at once to one member: the second waits for the first to commit
        # (locks taken in member order, so they cannot deadlock), then counts its deliveries
        # against the frequency cap.
        await conn.execute(
            """
            SELECT pg_advisory_xact_lock(hashtext('offer-cap:' || member::text))
            FROM (SELECT member FROM offer_audience WHERE offer = $1 AND member > $2
                  ORDER BY member LIMIT $3) b
            ORDER BY member
            """,
            offer["id"],
            cursor or UUID(int=0),
            batch_size,
        )
        result = await conn.fetchrow(
            BATCH_SQL,
            offer["id"],
            cursor or UUID(int=0),
            batch_size,
            settings["cap_days"],
            settings["frequency_cap"],
        )
        last = result["last"]
        rows = json.loads(result["rows"]) if isinstance(result["rows"], str) else result["rows"]
        ids = [UUID(row["id"]) for row in rows]
        if ids and offer["benefit"] == "voucher":
            codes = {
                str(r["id"]): r["voucher_code"]
                for r in await conn.fetch(VOUCHER_SQL, offer["id"], ids, len(ids))
            }
            for row in rows:
                row["voucher_code"] = codes.get(row["id"])
        if ids:
            await conn.execute(
                INBOX_SQL, ids, title, body, title_zh, body_zh, code_line("en"), code_line("zh")
            )
        if last is not None:
            await conn.execute("UPDATE offers SET cursor = $2 WHERE id = $1", offer["id"], last)
    return last, [row for row in rows if row["status"] == "sending"]


async def deliver(offer_id: UUID, *, sms: Any = None, batch_size: int = BATCH_SIZE) -> int:
    """Deliver the snapshot from the offer's cursor to the end; returns rows claimed."""
    sms = sms or messaging.sms_sender()
    async with db.connection() as conn:
        offer = await conn.fetchrow("SELECT * FROM offers WHERE id = $1", offer_id)
    if offer is None or offer["status"] != "sending":
        return 0
    cursor = offer["cursor"]
    claimed = 0
    while True:
        last, rows = await deliver_batch(offer, cursor, batch_size)
        if last is None:
            break
        claimed += len(rows)
        await _send({offer["id"]: offer}, rows, sms)
        cursor = last
    return claimed


async def finish(offer_id: UUID) -> None:
    async with db.connection() as conn:
        await conn.execute(
            """
            UPDATE offers SET status = 'sent', sent_at = coalesce(sent_at, now())
            WHERE id = $1 AND status = 'sending'
            """,
            offer_id,
        )


async def send_offer(offer_id: UUID, *, sms: Any = None, batch_size: int = BATCH_SIZE) -> int:
    """The whole send: snapshot, deliver every batch, mark sent. Safe to run twice."""
    offer_id = UUID(str(offer_id))
    await snapshot(offer_id)
    claimed = await deliver(offer_id, sms=sms, batch_size=batch_size)
    await finish(offer_id)
    return claimed


# --- retries ------------------------------------------------------------------------------

CLAIM_RETRIES_SQL = """
WITH due AS (
    SELECT d.id FROM offer_deliveries d
    WHERE d.status = 'failed' AND d.next_attempt_at <= now()
      AND ($1::uuid IS NULL OR d.offer = $1)
    ORDER BY d.next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED
), checked AS (
    -- Consent can be withdrawn between attempts, the member merged or erased, the address
    -- changed: then the delivery is dropped (a merged member's survivor has its own).
    SELECT d.id,
           m.status = 'active'
           AND d.address IS NOT DISTINCT FROM
               CASE d.channel WHEN 'email' THEN m.email WHEN 'sms' THEN m.phone END
           AS reachable,
           m.contact_preferences->'consents'
               @> jsonb_build_array(jsonb_build_object('channel', d.channel, 'granted', true))
           AS consented,
           m.contact_preferences->>'language' AS language
    FROM due JOIN offer_deliveries d ON d.id = due.id JOIN members m ON m.id = d.member
)
UPDATE offer_deliveries d SET
    status = CASE WHEN c.reachable AND c.consented THEN 'sending' ELSE 'failed' END,
    next_attempt_at = CASE WHEN c.reachable AND c.consented THEN d.next_attempt_at END,
    error = CASE WHEN NOT c.reachable THEN 'member no longer reachable there'
                 WHEN NOT c.consented THEN 'consent withdrawn' ELSE d.error END
FROM checked c WHERE d.id = c.id
RETURNING d.id, d.offer, d.member, d.channel, d.address, d.status, d.voucher_code, c.language
"""


async def retry_failed(
    offer_id: UUID | None = None, *, sms: Any = None, batch_size: int = BATCH_SIZE
) -> int:
    """Send failed deliveries whose retry is due; returns how many were sent again."""
    sms = sms or messaging.sms_sender()
    total = 0
    while True:
        async with db.transaction() as conn:
            rows = [dict(r) for r in await conn.fetch(CLAIM_RETRIES_SQL, offer_id, batch_size)]
        rows = [r for r in rows if r["status"] == "sending"]
        if not rows:
            return total
        async with db.connection() as conn:
            offers = {
                r["id"]: r
                for r in await conn.fetch(
                    "SELECT * FROM offers WHERE id = ANY($1::uuid[])",
                    list({r["offer"] for r in rows}),
                )
            }
        await _send(offers, rows, sms)
        total += len(rows)
