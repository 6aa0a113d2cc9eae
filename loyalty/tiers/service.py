"""Tier rules: qualification on a rolling window, upgrade at once on the qualifying purchase,
downgrade only at evaluation after a grace period and one step at a time (tiers.evaluation),
manual overrides that always end, the ladder's configuration and a member's standing.

`member_tiers.tier` is always the tier a member has now (an override included), and every
change is written to `tier_changes` and announced through the outbox (tiers.changes).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from loyalty.audit import service as audit
from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, PermissionDenied
from loyalty.events import service as events
from loyalty.infrastructure import db, i18n
from loyalty.infrastructure.clock import now
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.money import CENT, check_amount
from loyalty.members import service as members
from loyalty.members import visibility
from loyalty.tiers import schemas
from loyalty.tiers.changes import change
from loyalty.tiers.ladder import (
    forget_cache,
    ladder,
    next_evaluation,
    qualifying_value,
    tier_from_row,
    validate_ladder,
    value_query,
    window_start,
)

# --- configuration ------------------------------------------------------------------------


async def list_tiers() -> list[schemas.Tier]:
    return (await ladder(fresh=True)).tiers


async def put_tier(code: str, data: schemas.TierUpdate, principal: Principal) -> schemas.Tier:
    check_amount(data.threshold, "threshold", Decimal("999999999999"))
    check_amount(data.earn_multiplier, "earn_multiplier", Decimal(10))
    async with db.transaction() as conn:
        # One ladder change at a time, so two edits cannot together make an invalid ladder.
        await conn.execute("LOCK TABLE tier_definitions IN SHARE ROW EXCLUSIVE MODE")
        rows = await conn.fetch("SELECT code, rank, threshold, enabled FROM tier_definitions")
        proposed = [
            (r["code"], r["rank"], Decimal(r["threshold"]), r["enabled"])
            for r in rows
            if r["code"] != code
        ]
        proposed.append((code, data.rank, data.threshold, data.enabled))
        validate_ladder(proposed)
        before = await conn.fetchrow("SELECT * FROM tier_definitions WHERE code = $1", code)
        level = data.service_level
        row = await conn.fetchrow(
            """
            INSERT INTO tier_definitions (code, name, rank, threshold, earn_multiplier, enabled,
                contact_cadence_days, response_time_hours, named_service_team,
                executive_sponsor_role, birthday_gift, event_invitations, benefits,
                updated_at, updated_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now(), $14)
            ON CONFLICT (code) DO UPDATE SET
                name = excluded.name, rank = excluded.rank, threshold = excluded.threshold,
                earn_multiplier = excluded.earn_multiplier, enabled = excluded.enabled,
                contact_cadence_days = excluded.contact_cadence_days,
                response_time_hours = excluded.response_time_hours,
                named_service_team = excluded.named_service_team,
                executive_sponsor_role = excluded.executive_sponsor_role,
                birthday_gift = excluded.birthday_gift,
                event_invitations = excluded.event_invitations, benefits = excluded.benefits,
                updated_at = excluded.updated_at, updated_by = excluded.updated_by
            RETURNING *
            """,
            code,
            data.name,
            data.rank,
            data.threshold,
            data.earn_multiplier,
            data.enabled,
            level.contact_cadence_days,
            level.response_time_hours,
            level.named_service_team,
            level.executive_sponsor_role,
            level.birthday_gift,
            level.event_invitations,
            level.benefits,
            principal.label,
        )
        await audit.record("tiers.update", "tier", code, before=before, after=row)
    forget_cache()
    return tier_from_row(row)


async def get_settings_() -> schemas.TierSettings:
    return (await ladder(fresh=True)).settings


async def put_settings(
    data: schemas.TierSettingsUpdate, principal: Principal
) -> schemas.TierSettings:
    async with db.transaction() as conn:
        before = await conn.fetchrow("SELECT * FROM tier_settings WHERE id = 1 FOR UPDATE")
        after = await conn.fetchrow(
            """
            INSERT INTO tier_settings (id, basis, window_months, grace_days, updated_at, updated_by)
            VALUES (1, $1, $2, $3, now(), $4)
            ON CONFLICT (id) DO UPDATE SET basis = excluded.basis,
                window_months = excluded.window_months, grace_days = excluded.grace_days,
                updated_at = excluded.updated_at, updated_by = excluded.updated_by
            RETURNING *
            """,
            data.basis,
            data.window_months,
            data.grace_days,
            principal.label,
        )
        await audit.record("tier_settings.update", "tier_settings", 1, before=before, after=after)
    forget_cache()
    return await get_settings_()


async def distribution(principal: Principal | None = None) -> list[tuple[schemas.Tier, int]]:
    """How many members sit in each tier (switched-on tiers, and any still holding members),
    of those `principal` may see (all without one)."""
    current = await ladder()
    condition, args = visibility.condition(principal) if principal else ("true", [])
    async with db.connection() as conn:
        counts = dict(
            await conn.fetch(
                "SELECT t.tier, count(*) FROM member_tiers t"
                " JOIN members m ON m.id = t.member AND m.status = 'active'"
                f" WHERE {condition}"
                " GROUP BY t.tier",
                *args,
            )
        )
    return [(t, counts.get(t.code, 0)) for t in current.tiers if t.enabled or counts.get(t.code)]


# --- a member's tier ----------------------------------------------------------------------


async def status(member_id: UUID, principal: Principal) -> schemas.MemberTier:
    """Where the member stands: tier, what it takes to keep it and to reach the next."""
    await members.get_member(member_id, principal)
    current = await ladder()
    at = now()
    settings = current.settings
    next_run = next_evaluation(at)
    async with db.connection() as conn:
        state = await conn.fetchrow("SELECT * FROM member_tiers WHERE member = $1", member_id)
        value = await qualifying_value(conn, member_id, at, settings)
        # What still counts at the next evaluation: purchases that will not have aged out.
        value_next = await conn.fetchval(
            value_query(settings.basis, "$1", "$2", "$3"),
            member_id,
            window_start(next_run, settings.window_months),
            at,
        )
        history = await conn.fetch(
            "SELECT * FROM tier_changes WHERE member = $1 ORDER BY at DESC, id", member_id
        )
    tier = current.by_code(state["tier"]) or current.enabled[0]
    above = current.next_above(tier.rank)
    below_since = state["below_since"]
    override = None
    if state["override_until"] is not None:
        override = schemas.Override(
            tier=state["override_tier"],
            until=state["override_until"],
            reason=state["override_reason"],
            by=state["override_by"],
        )
    return schemas.MemberTier(
        member_id=member_id,
        tier=tier.code,
        name=tier.name,
        since=state["since"],
        basis=settings.basis,
        qualifying_value=value,
        window_start=window_start(at, settings.window_months),
        next_tier=schemas.NextTier(
            code=above.code,
            name=above.name,
            threshold=above.threshold,
            still_needed=max(Decimal(0), above.threshold - value),
        )
        if above
        else None,
        next_evaluation=next_run,
        needed_to_keep=max(Decimal(0), tier.threshold - Decimal(value_next)).quantize(CENT),
        below_threshold_since=below_since,
        downgrade_possible_from=below_since + timedelta(days=settings.grace_days)
        if below_since and override is None
        else None,
        override=override,
        service_level=tier.service_level,
        history=[
            schemas.TierChange(
                from_tier=row["from_tier"],
                to_tier=row["to_tier"],
                reason=row["reason"],
                note=row["note"],
                actor=row["actor"],
                qualifying_value=row["qualifying_value"],
                at=row["at"],
            )
            for row in history
        ],
    )


async def set_override(
    member_id: UUID, data: schemas.TierOverrideUpdate, principal: Principal
) -> schemas.MemberTier:
    """A manager sets a tier until a date; afterwards normal evaluation resumes."""
    if not principal.can("tiers:override"):
        raise PermissionDenied("only managers and above can override a tier")
    await members.get_member(member_id, principal)
    current = await ladder()
    tier = current.by_code(data.tier)
    if tier is None or not tier.enabled:
        raise InvalidInput("no switched-on tier with this code", field="tier")
    at = now()
    if data.until <= at:
        raise InvalidInput("must be in the future", field="until")
    if data.until > at + timedelta(days=3 * 366):
        raise InvalidInput("an override lasts at most three years", field="until")
    async with db.transaction() as conn:
        state = await conn.fetchrow(
            "SELECT tier FROM member_tiers WHERE member = $1 FOR UPDATE", member_id
        )
        await change(
            conn,
            member_id,
            state["tier"],
            tier.code,
            reason="override",
            at=at,
            actor=principal.label,
            note=f"{data.reason} (until {data.until.isoformat()})",
            clear_override=False,
        )
        await conn.execute(
            """
            UPDATE member_tiers SET override_tier = $2, override_until = $3,
                override_reason = $4, override_by = $5
            WHERE member = $1
            """,
            member_id,
            tier.code,
            data.until,
            data.reason,
            principal.label,
        )
    return await status(member_id, principal)


async def end_override(member_id: UUID, principal: Principal) -> schemas.MemberTier:
    """End an override now: the member returns to the tier their qualification earns."""
    if not principal.can("tiers:override"):
        raise PermissionDenied("only managers and above can end an override")
    await members.get_member(member_id, principal)
    current = await ladder()
    at = now()
    async with db.transaction() as conn:
        state = await conn.fetchrow(
            "SELECT tier, override_until FROM member_tiers WHERE member = $1 FOR UPDATE",
            member_id,
        )
        if state["override_until"] is None:
            raise Conflict("this member has no override", field="override")
        value = await qualifying_value(conn, member_id, at, current.settings)
        await change(
            conn,
            member_id,
            state["tier"],
            current.qualified(value).code,
            reason="override_end",
            at=at,
            value=value,
            actor=principal.label,
            note="ended early",
        )
    return await status(member_id, principal)


DOWNGRADE_TITLE = N_("Your tier is now %(tier)s")
DOWNGRADE_BODY = N_(
    "Your qualifying spend over the last %(months)s months is below your previous tier, so"
    " your tier is now %(tier)s. Shop with us to rise again."
)
UPGRADE_TITLE = N_("Welcome to %(tier)s")
UPGRADE_BODY = N_("Your tier is now %(tier)s. See your benefits in the portal.")


def _tier_news(language: str, reason: str, code: str, name: str, months: int) -> tuple[str, str]:
    """The tier change message in one language; a built-in tier's name is translated, a
    configured one is shown as configured."""
    with i18n.speaking(language):
        tier = i18n.label(code) if language != "en" and code in i18n.LABELS else name
        if reason == "downgrade":
            title, body = DOWNGRADE_TITLE, DOWNGRADE_BODY
        else:
            title, body = UPGRADE_TITLE, UPGRADE_BODY
        values = {"tier": tier, "months": months}
        return i18n.gettext(title) % values, i18n.gettext(body) % values


async def tell_the_member(event: dict[str, Any]) -> None:
    """Tier changes reach the member's inbox in both languages (the portal shows the
    member's; channels come later)."""
    payload = event["payload"]
    current = await ladder()
    code = payload["to_tier"]
    to_tier = current.by_code(code)
    name = to_tier.name if to_tier else code
    months = current.settings.window_months
    title, body = _tier_news("en", payload["reason"], code, name, months)
    title_zh, body_zh = _tier_news("zh", payload["reason"], code, name, months)
    await events.notify_member(
        event, kind="tier.changed", title=title, body=body, title_zh=title_zh, body_zh=body_zh
    )
