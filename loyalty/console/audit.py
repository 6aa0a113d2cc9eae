"""The audit trail in the console (`/console/audit`): every staff change, newest first, with
filters for who, what, on what and when, what each configuration change did (before and
after), and a CSV download of the same filter. Only `loyalty.audit.service` is called, with
the API's permission (`audit:trail`), so the page shows what the API shows."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Controller, Request, Response, get
from litestar.params import QueryParameter
from litestar.response import Template

from loyalty.audit import schemas, service
from loyalty.console.common import csv_download, page, problem, staff
from loyalty.errors import InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.i18n import gettext as _
from loyalty.settings import get_settings

PERMISSION = "audit:trail"
PAGE_SIZE = 50

# What a record is about, by the start of its action: the "What" filter's choices, and the
# words shown for the detailed records (a generic record shows its operation).
FAMILIES = {
    "earning_rules": N_("Earning rules"),
    "tiers": N_("Tiers"),
    "tier_settings": N_("Tier settings"),
    "rep_settings": N_("Rep settings"),
    "referral_settings": N_("Referral settings"),
    "marketing_settings": N_("Marketing settings"),
    "staff": N_("Staff"),
    "api_keys": N_("API keys"),
    "rewards": N_("Rewards"),
    "webhooks": N_("Webhooks"),
    "points": N_("Points adjustments"),
    "members.merge": N_("Merges"),
    "closures": N_("Closure decisions"),
    "assignments": N_("Assignments"),
    "POST": N_("Other changes: created"),
    "PUT": N_("Other changes: set"),
    "PATCH": N_("Other changes: edited"),
    "DELETE": N_("Other changes: removed"),
}
ACTIONS = {
    "earning_rules.update": N_("Earning rules changed"),
    "tiers.update": N_("Tier changed"),
    "tier_settings.update": N_("Tier settings changed"),
    "rep_settings.update": N_("Rep settings changed"),
    "referral_settings.update": N_("Referral settings changed"),
    "marketing_settings.update": N_("Marketing settings changed"),
    "staff.create": N_("Staff user added"),
    "staff.update": N_("Staff user changed"),
    "staff.deactivate": N_("Staff user deactivated"),
    "api_keys.create": N_("API key created"),
    "api_keys.revoke": N_("API key revoked"),
    "rewards.create": N_("Reward added"),
    "rewards.update": N_("Reward changed"),
    "rewards.vouchers_import": N_("Voucher codes imported"),
    "webhooks.create": N_("Webhook added"),
    "webhooks.update": N_("Webhook changed"),
    "points.adjust": N_("Points adjusted"),
    "members.merge": N_("Members merged"),
    "closures.approve": N_("Closure approved"),
    "closures.reject": N_("Closure rejected"),
}
ASSIGNMENT = N_("Member moved (%(kind)s)")
ACTOR_KINDS = {"staff": N_("Staff"), "api_key": N_("API key"), "system": N_("System")}
# Bookkeeping columns every change touches: not worth a line of their own.
QUIET = frozenset({"updated_at", "updated_by"})

Text = Annotated[str, QueryParameter(max_length=200)]
Day = Annotated[str, QueryParameter(max_length=10)]
FromDay = Annotated[str, QueryParameter(name="from", max_length=10)]
PageNumber = Annotated[int, QueryParameter(name="page", ge=1, le=2000)]


def _day(value: str, field: str) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(N_("is not a date"), field=field) from None


def trail_filter(actor: str, what: str, subject: str, from_: str, to: str) -> schemas.AuditFilter:
    """The page's filter: days in the business time zone, both ends included."""
    tz = get_settings().tz
    first, last = _day(from_, "from"), _day(to, "to")
    if first and last and first > last:
        raise InvalidInput(N_("must not be before the first day"), field="to")
    return schemas.AuditFilter(
        actor=actor.strip() or None,
        action=what.strip() or None,
        subject=subject.strip() or None,
        from_=datetime.combine(first, time(), tz) if first else None,
        to=datetime.combine(last + timedelta(days=1), time(), tz) if last else None,
    )


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= 200 else text[:199] + "…"


def changes(entry: schemas.AuditEntry) -> list[tuple[str, str, str]]:
    """(field, before, after) for each field the change set, made or removed."""
    before = entry.before if isinstance(entry.before, dict) else {}
    after = entry.after if isinstance(entry.after, dict) else {}
    if not isinstance(entry.before, dict) and entry.before is not None:
        before = {"": entry.before}
    if not isinstance(entry.after, dict) and entry.after is not None:
        after = {"": entry.after}
    rows = []
    for key in list(before) + [k for k in after if k not in before]:
        old, new = before.get(key), after.get(key)
        if key in QUIET or old == new:
            continue
        rows.append((key, "" if old is None else _shown(old), "" if new is None else _shown(new)))
    return rows


def action_label(action: str) -> str:
    if action in ACTIONS:
        return _(ACTIONS[action])
    if action.startswith("assignments."):
        return _(ASSIGNMENT) % {"kind": action.removeprefix("assignments.")}
    return action


class AuditPages(Controller):
    path = "/"

    @get("/audit", opt=covers("GET /api/v1/audit"))
    async def trail(
        self,
        request: Request,
        actor: Text = "",
        what: Text = "",
        subject: Text = "",
        from_: FromDay = "",
        to: Day = "",
        page_number: PageNumber = 1,
    ) -> Template:
        staff(request, PERMISSION)
        values = {"actor": actor, "what": what, "subject": subject, "from": from_, "to": to}
        error = None
        try:
            data = trail_filter(actor, what, subject, from_, to)
            found = await service.entries(
                data, limit=PAGE_SIZE + 1, offset=(page_number - 1) * PAGE_SIZE
            )
        except InvalidInput as exc:
            error, found = exc, []
        query = urlencode({k: v for k, v in values.items() if v})
        return page(
            request,
            "audit_trail.html",
            status=422 if error else 200,
            error=problem(error) if error else None,
            field_errors={error.field: _(error.detail)} if error and error.field else {},
            values=values,
            families={key: _(label) for key, label in FAMILIES.items()},
            entries=[
                (
                    e,
                    action_label(e.action),
                    _(ACTOR_KINDS.get(e.actor_kind, e.actor_kind)),
                    changes(e),
                )
                for e in found[:PAGE_SIZE]
            ],
            page_number=page_number,
            more=len(found) > PAGE_SIZE,
            query=query,
        )

    @get("/audit.csv", opt=covers("GET /api/v1/audit.csv"))
    async def trail_csv(
        self,
        request: Request,
        actor: Text = "",
        what: Text = "",
        subject: Text = "",
        from_: FromDay = "",
        to: Day = "",
    ) -> Response:
        staff(request, PERMISSION)
        data = trail_filter(actor, what, subject, from_, to)
        return csv_download(await service.entries_csv(data), "audit.csv")
