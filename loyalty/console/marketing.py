"""The marketing workspace beyond segments: the marketing settings (frequency cap, retries,
churn windows), the movement report's two actions (a segment of the month's declining
valuable members, and a follow-up task for each one's rep), and the marketing part of the
console home (offers awaiting action, sends in progress, this month's movement)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from loyalty.auth import Principal
from loyalty.console import movement
from loyalty.console.common import back, convert, form, form_page, staff, this_month
from loyalty.errors import DomainError
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.schemas import Input
from loyalty.marketing import reports, schemas, service
from loyalty.workflows import movement_actions

SETTINGS_SAVED = {"settings": N_("The marketing settings are saved.")}
SETTING_FIELDS = (
    "frequency_cap",
    "cap_days",
    "max_attempts",
    "retry_seconds",
    "churn_days",
    "at_risk_days",
    "falling_ratio",
)
FOLLOW_UP_DAYS = 7  # "call within N days": the form's first value


class MarketingPages(Controller):
    path = "/"

    @get("/marketing-settings", opt=covers("GET /api/v1/marketing-settings"))
    async def settings_page(self, request: Request) -> Template:
        staff(request, "offers:manage")
        return await settings_page(request)

    @post("/marketing-settings", opt=covers("PUT /api/v1/marketing-settings"))
    async def save_settings(self, request: Request) -> Template | Redirect:
        """Managers of marketing and admins (offers:approve) change them."""
        principal = staff(request, "offers:approve")
        values = await form(request)
        try:
            data = convert(
                {k: str(values.get(k, "")).strip() for k in SETTING_FIELDS},
                schemas.MarketingSettingsUpdate,
            )
            await service.update_settings(data, principal)
        except DomainError as exc:
            return await settings_page(request, exc, values)
        return back("/console/marketing-settings?saved=settings")

    @post("/movement/segment", opt=covers("POST /api/v1/reports/movement/{month:str}/segment"))
    async def movement_segment(self, request: Request) -> Template | Redirect:
        """The month's declining and at-risk valuable members as a segment (once a month)."""
        principal = staff(request, "segments:manage")
        values = await form(request)
        month = str(values.get("month", "")).strip() or this_month()
        try:
            done = await movement_actions.declining_segment(month, principal)
        except DomainError as exc:
            return await _movement_again(request, month, exc, values)
        return back(
            f"/console/movement?month={month}&done=segment&added={done.added}"
            f"&members={done.members}&segment={done.segment.id}#movement-actions"
        )

    @post(
        "/movement/follow-ups",
        opt=covers("POST /api/v1/reports/movement/{month:str}/follow-ups"),
    )
    async def movement_follow_ups(self, request: Request) -> Template | Redirect:
        """A task for each declining valuable member's rep, due in the days given."""
        principal = staff(request, "marketing:report")
        values = await form(request)
        month = str(values.get("month", "")).strip() or this_month()
        try:
            days = str(values.get("days", "")).strip()
            checked = convert({"days": days or "0"}, _Days)
            done = await movement_actions.declining_follow_ups(month, checked.days, principal)
        except DomainError as exc:
            return await _movement_again(request, month, exc, values)
        return back(
            f"/console/movement?month={month}&done=tasks&added={done.created}"
            f"&members={done.members}#movement-actions"
        )


class _Days(Input):
    days: int


async def _movement_again(
    request: Request, month: str, exc: DomainError, values: dict[str, Any]
) -> Template:
    """The movement page (movement.py's) with the action's error beside its field."""
    return await movement.movement_page(request, month, action_error=exc, action_form=values)


async def settings_page(
    request: Request, error: DomainError | None = None, values: dict[str, Any] | None = None
) -> Template:
    principal = staff(request, "offers:manage")
    current = await service.get_settings_row()
    shown = {k: str(getattr(current, k)) for k in SETTING_FIELDS}
    shown.update(values or {})
    return form_page(
        request,
        "marketing_settings.html",
        SETTINGS_SAVED,
        error,
        current=current,
        values=shown,
        can_change=principal.can("offers:approve"),
    )


async def marketing_home(principal: Principal) -> dict[str, Any] | None:
    """The console home's marketing figures, for staff who work on offers."""
    if not principal.can("offers:manage"):
        return None
    drafts = await service.list_offers("draft", 100, 0)
    approved = await service.list_offers("approved", 100, 0)
    sending = await service.list_offers("sending", 5, 0)
    progress = []
    for offer in sending:
        results = await service.results(offer.id)
        # Every member reached gets the inbox entry, whatever else they get.
        progress.append(
            {"offer": offer, "done": results.delivered["portal"], "audience": results.audience}
        )
    movement = None
    if principal.can("marketing:report"):
        movement = (await reports.movement(this_month())).totals
    return {
        "drafts": drafts,
        "approved": approved,
        "sending": progress,
        "movement": movement,
        "month": this_month(),
        "can_approve": principal.can("offers:approve"),
    }
