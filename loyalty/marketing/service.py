"""Offers: drafts, review (submit, send back with a comment, approval by a manager of
marketing other than the author), the send request, voucher pools, and the marketing
settings. Delivery itself is in `delivery.py`, results and progress in `offer_results.py`,
unsubscribe links in `unsubscribe.py`."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import msgspec
from arq.connections import ArqRedis

from loyalty.audit import service as audit
from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.infrastructure.i18n import N_
from loyalty.marketing import bonus, delivery, schemas, segments
from loyalty.tiers import service as tiers

OFFER_FIELDS = (
    "title_en",
    "title_zh",
    "body_en",
    "body_zh",
    "valid_from",
    "valid_until",
    "target_tiers",
    "segment",
    "benefit",
    "bonus_multiplier",
    "reward",
    "reward_points_cost",
)


def offer_schema(row: Any, vouchers_left: int | None = None) -> schemas.Offer:
    return db.from_row(
        schemas.Offer,
        row,
        target_tiers=row["target_tiers"] or [],
        segment_id=row["segment"],
        reward_id=row["reward"],
        template_id=row["template"],
        vouchers_left=vouchers_left,
    )


async def _check(conn: Any, values: dict[str, Any]) -> None:
    if values["valid_until"] <= values["valid_from"]:
        raise InvalidInput(N_("must be after valid_from"), field="valid_until")
    known = {t.code for t in (await tiers.ladder()).tiers}
    for i, code in enumerate(values["target_tiers"] or []):
        if code not in known:
            raise InvalidInput(f"no tier {code!r}", field=f"target_tiers[{i}]")
    if values["segment"] is not None and not await conn.fetchval(
        "SELECT 1 FROM segments WHERE id = $1", values["segment"]
    ):
        raise InvalidInput(N_("no such segment"), field="segment_id")
    benefit = values["benefit"]
    multiplier = values["bonus_multiplier"]
    if multiplier is not None and not (1 < multiplier <= 20):
        raise InvalidInput(N_("must be above 1 and at most 20"), field="bonus_multiplier")
    if (benefit == "bonus_points") != (values["bonus_multiplier"] is not None):
        raise InvalidInput(
            N_("a bonus points offer needs a multiplier, and only it"), field="bonus_multiplier"
        )
    if benefit == "reward_price":
        if values["reward"] is None or values["reward_points_cost"] is None:
            raise InvalidInput(
                N_("a lower reward price offer names a reward and its cost"), field="reward_id"
            )
        if not await conn.fetchval("SELECT 1 FROM rewards WHERE id = $1", values["reward"]):
            raise InvalidInput(N_("no such reward"), field="reward_id")
    elif values["reward"] is not None or values["reward_points_cost"] is not None:
        raise InvalidInput(N_("only a lower reward price offer names a reward"), field="reward_id")


def _values(data: msgspec.Struct) -> dict[str, Any]:
    values = msgspec.structs.asdict(data)
    if "segment_id" in values:
        values["segment"] = values.pop("segment_id")
    if "reward_id" in values:
        values["reward"] = values.pop("reward_id")
    if isinstance(values.get("target_tiers"), list):
        values["target_tiers"] = sorted(set(values["target_tiers"]))
    return values


async def create_offer(
    data: schemas.OfferCreate, principal: Principal, offer_id: UUID | None = None
) -> schemas.Offer:
    """A draft. With `offer_id` (a form's idempotency key) a repeated call returns the offer
    the first one made."""
    values = _values(data)
    async with db.transaction() as conn:
        await _check(conn, values)
        row = await conn.fetchrow(
            f"""
            INSERT INTO offers (id, {", ".join(OFFER_FIELDS)}, auto_kind, status, created_by,
                created_at, updated_by, updated_at)
            VALUES ($1, {", ".join(f"${i}" for i in range(2, len(OFFER_FIELDS) + 2))},
                ${len(OFFER_FIELDS) + 2}, 'draft', ${len(OFFER_FIELDS) + 3}, now(),
                ${len(OFFER_FIELDS) + 3}, now())
            ON CONFLICT (id) DO NOTHING
            RETURNING *
            """,
            offer_id or uuid4(),
            *(values[name] for name in OFFER_FIELDS),
            values["auto_kind"],
            principal.label,
        )
        if row is None:
            row = await conn.fetchrow("SELECT * FROM offers WHERE id = $1", offer_id)
            if row["created_by"] != principal.label:
                raise Conflict("this offer id is taken")
    return offer_schema(row)


async def _locked(conn: Any, offer_id: UUID) -> Any:
    row = await conn.fetchrow("SELECT * FROM offers WHERE id = $1 FOR UPDATE", offer_id)
    if row is None:
        raise NotFound("no such offer")
    return row


ONLY_DRAFTS = {
    "changed": N_("only a draft can be changed"),
    "submitted": N_("only a draft can be submitted"),
}


async def _locked_draft(conn: Any, offer_id: UUID, done: str) -> Any:
    """The offer's row, locked; only a draft may be `done` (changed, submitted)."""
    row = await _locked(conn, offer_id)
    if row["status"] != "draft":
        raise Conflict(ONLY_DRAFTS[done])
    return row


async def update_offer(
    offer_id: UUID, data: schemas.OfferUpdate, principal: Principal
) -> schemas.Offer:
    changes = {k: v for k, v in _values(data).items() if v is not msgspec.UNSET}
    async with db.transaction() as conn:
        row = await _locked_draft(conn, offer_id, "changed")
        values = {**dict(row), **changes}
        await _check(conn, values)
        row = await conn.fetchrow(
            f"""
            UPDATE offers SET {", ".join(f"{n} = ${i}" for i, n in enumerate(OFFER_FIELDS, 2))},
                updated_by = ${len(OFFER_FIELDS) + 2}, updated_at = now()
            WHERE id = $1 RETURNING *
            """,
            offer_id,
            *(values[name] for name in OFFER_FIELDS),
            principal.label,
        )
    return offer_schema(row)


async def _vouchers_left(conn: Any, row: Any) -> int | None:
    if row["benefit"] != "voucher":
        return None
    return await conn.fetchval(
        "SELECT count(*) FROM offer_vouchers WHERE offer = $1 AND member IS NULL", row["id"]
    )


async def get_offer(offer_id: UUID) -> schemas.Offer:
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM offers WHERE id = $1", offer_id)
        if row is None:
            raise NotFound("no such offer")
        return offer_schema(row, await _vouchers_left(conn, row))


async def list_offers(status: str | None, limit: int, offset: int) -> list[schemas.Offer]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT * FROM offers WHERE ($1::text IS NULL OR status = $1)
            ORDER BY created_at DESC, id LIMIT $2 OFFSET $3
            """,
            status,
            limit,
            offset,
        )
    return [offer_schema(row) for row in rows]


async def submit(offer_id: UUID, principal: Principal) -> schemas.Offer:
    """The author asks for approval: the draft is locked (awaiting approval) until a reviewer
    approves it or sends it back."""
    async with db.transaction() as conn:
        await _locked_draft(conn, offer_id, "submitted")
        row = await conn.fetchrow(
            """
            UPDATE offers SET status = 'submitted', submitted_by = $2, submitted_at = now(),
                updated_by = $2, updated_at = now()
            WHERE id = $1 RETURNING *
            """,
            offer_id,
            principal.label,
        )
    return offer_schema(row)


async def send_back(
    offer_id: UUID, data: schemas.OfferSendBack, principal: Principal
) -> schemas.Offer:
    """A reviewer returns a submitted offer to its author with a comment: a draft again."""
    if not principal.can("offers:approve"):
        raise PermissionDenied("offers are reviewed by a manager of marketing")
    comment = data.comment.strip()
    if not comment:
        raise InvalidInput(N_("say what should change"), field="comment")
    async with db.transaction() as conn:
        row = await _locked(conn, offer_id)
        if row["status"] != "submitted":
            raise Conflict(N_("only an offer awaiting approval can be sent back"))
        row = await conn.fetchrow(
            """
            UPDATE offers SET status = 'draft', review_comment = $3, reviewed_by = $2,
                reviewed_at = now(), updated_by = $2, updated_at = now()
            WHERE id = $1 RETURNING *
            """,
            offer_id,
            principal.label,
            comment,
        )
    return offer_schema(row)


async def _audience_size(conn: Any, row: Any) -> int:
    """How many members the offer would reach now (the send takes its own snapshot)."""
    f = await delivery.offer_filter(conn, row)
    q = delivery.audience_query(row, f, start=1)
    return await conn.fetchval(
        f"SELECT count(*) FROM {segments.from_clause(q)} WHERE {q.where}", *q.params
    )


async def approval_problem(conn: Any, row: Any) -> str | None:
    """Why the offer cannot be approved now (None: it can). Shown on its page too."""
    if row["valid_until"] <= row["valid_from"]:
        return N_("the offer ends before it starts")
    if row["valid_until"] <= now():
        return N_("this offer's validity has already ended")
    if row["benefit"] == "voucher" and not await _vouchers_left(conn, row):
        return N_("the voucher pool is empty: upload codes first")
    # An automatic offer's audience is who newly qualifies each month, often nobody today.
    if row["auto_kind"] is None and await _audience_size(conn, row) == 0:
        return N_("the offer reaches no member: change its tiers or segment")
    return None


async def why_not_approvable(offer_id: UUID) -> str | None:
    """The reason approval would be refused now, for the offer's page (None: none)."""
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM offers WHERE id = $1", offer_id)
        if row is None:
            raise NotFound("no such offer")
        return await approval_problem(conn, row)


async def approve(offer_id: UUID, principal: Principal) -> schemas.Offer:
    """A manager of marketing (or an admin) approves a draft or a submitted offer, never one
    they wrote; only then can it be sent."""
    if not principal.can("offers:approve"):
        raise PermissionDenied("offers are approved by a manager of marketing")
    async with db.transaction() as conn:
        row = await _locked(conn, offer_id)
        if row["status"] not in ("draft", "submitted"):
            raise Conflict(N_("only a draft or submitted offer can be approved"))
        if row["created_by"] == principal.label:
            raise PermissionDenied(N_("the author of an offer cannot approve it"))
        reason = await approval_problem(conn, row)
        if reason is not None:
            raise Conflict(reason)
        row = await conn.fetchrow(
            """
            UPDATE offers SET status = 'approved', approved_by = $2, approved_at = now(),
                review_comment = NULL, updated_by = $2, updated_at = now()
            WHERE id = $1 RETURNING *
            """,
            offer_id,
            principal.label,
        )
    return offer_schema(row)


async def cancel(offer_id: UUID, principal: Principal) -> schemas.Offer:
    """An offer that was not sent (draft, submitted, approved); a template stops its monthly
    instances."""
    async with db.transaction() as conn:
        row = await conn.fetchrow(
            """
            UPDATE offers SET status = 'cancelled', updated_by = $2, updated_at = now()
            WHERE id = $1 AND status IN ('draft', 'submitted', 'approved') RETURNING *
            """,
            offer_id,
            principal.label,
        )
        if row is None:
            if not await conn.fetchval("SELECT 1 FROM offers WHERE id = $1", offer_id):
                raise NotFound("no such offer")
            raise Conflict(N_("an offer that is being sent or was sent cannot be cancelled"))
    return offer_schema(row)


async def request_send(offer_id: UUID, redis: ArqRedis) -> schemas.SendResult:
    """Queue the send job for an approved offer (again for one being sent: harmless)."""
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT status, auto_kind, template, valid_until FROM offers WHERE id = $1", offer_id
        )
    if row is None:
        raise NotFound("no such offer")
    if row["auto_kind"] is not None and row["template"] is None:
        raise Conflict(N_("an automatic offer is sent by the worker every day to newcomers"))
    if row["status"] not in ("approved", "sending"):
        raise Conflict(N_("only an approved offer can be sent"))
    if (
        row["status"] == "approved"
        and row["valid_until"] is not None
        and row["valid_until"] <= now()
    ):
        raise Conflict(N_("this offer's validity has ended; it can no longer be sent"))
    job = await redis.enqueue_job("send_offer", str(offer_id), _job_id=f"send_offer:{offer_id}")
    return schemas.SendResult(offer_id=offer_id, status=row["status"], queued=job is not None)


# --- vouchers -----------------------------------------------------------------------------


async def import_vouchers(
    offer_id: UUID, data: schemas.VoucherImportCreate
) -> schemas.VoucherImportResult:
    codes = list(dict.fromkeys(data.codes))
    async with db.transaction() as conn:
        row = await conn.fetchrow("SELECT benefit FROM offers WHERE id = $1", offer_id)
        if row is None:
            raise NotFound("no such offer")
        if row["benefit"] != "voucher":
            raise InvalidInput(N_("only a voucher offer takes codes"), field="codes")
        inserted = await conn.fetch(
            """
            INSERT INTO offer_vouchers (id, offer, code, imported_at)
            SELECT gen_random_uuid(), $1, code, now() FROM unnest($2::text[]) AS code
            ON CONFLICT (offer, code) DO NOTHING RETURNING code
            """,
            offer_id,
            codes,
        )
        left = await conn.fetchval(
            "SELECT count(*) FROM offer_vouchers WHERE offer = $1 AND member IS NULL", offer_id
        )
    new = {r["code"] for r in inserted}
    return schemas.VoucherImportResult(
        imported=len(inserted),
        already_there=len(data.codes) - len(inserted),
        vouchers_left=left,
        skipped=[code for code in codes if code not in new],
    )


async def use_voucher(offer_id: UUID, code: str) -> None:
    """A till or the shop reports a voucher code used (counted in the offer's results)."""
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT member, used_at FROM offer_vouchers WHERE offer = $1 AND code = $2",
            offer_id,
            code,
        )
        if row is None or row["member"] is None:
            raise NotFound("no such voucher was issued for this offer")
        if row["used_at"] is not None:
            raise Conflict("this voucher was already used")
        await conn.execute(
            "UPDATE offer_vouchers SET used_at = now() WHERE offer = $1 AND code = $2",
            offer_id,
            code,
        )


# --- settings -----------------------------------------------------------------------------


async def get_settings_row() -> schemas.MarketingSettings:
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM marketing_settings WHERE id = 1")
    return msgspec.convert(
        dict(row), schemas.MarketingSettings, from_attributes=False, strict=False
    )


async def update_settings(
    data: schemas.MarketingSettingsUpdate, principal: Principal
) -> schemas.MarketingSettings:
    if not (0 < data.falling_ratio < 1):
        raise InvalidInput("must be between 0 and 1", field="falling_ratio")
    if data.at_risk_days >= data.churn_days:
        raise InvalidInput("must be shorter than churn_days", field="at_risk_days")
    async with db.transaction() as conn:
        before = await conn.fetchrow("SELECT * FROM marketing_settings WHERE id = 1 FOR UPDATE")
        after = await conn.fetchrow(
            """
            UPDATE marketing_settings SET frequency_cap = $1, cap_days = $2, max_attempts = $3,
                retry_seconds = $4, churn_days = $5, at_risk_days = $6, falling_ratio = $7,
                updated_at = now(), updated_by = $8
            WHERE id = 1 RETURNING *
            """,
            data.frequency_cap,
            data.cap_days,
            data.max_attempts,
            data.retry_seconds,
            data.churn_days,
            data.at_risk_days,
            data.falling_ratio,
            principal.label,
        )
        await audit.record(
            "marketing_settings.update", "marketing_settings", 1, before=before, after=after
        )
    bonus.forget()
    return await get_settings_row()
