"""Manager pages: move one member to another rep (the API's assignment rules, same service
call), who opened a member's archive, the department's reps with their levels and the
upper-tier members' service teams and sponsors, and the ownership rules (rep settings)."""

from __future__ import annotations

from typing import Any, get_args
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from loyalty.auth import Principal
from loyalty.console.common import back, chosen_id, convert, form, form_page, page, staff
from loyalty.errors import DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.members import service as members
from loyalty.reps import assignments, contacts, levels
from loyalty.reps import schemas as rep_schemas
from loyalty.reps import settings as rep_settings
from loyalty.staff import service as staff_service
from loyalty.tiers import service as tier_service

SAVED = {
    "moved": N_("The member has a new rep."),
    "unchanged": N_("The member already has that rep: nothing changed."),
    "level": N_("The rep's level is saved."),
    "settings": N_("The ownership rules are saved."),
}
POOL = "pool"  # the move form's choice for "back to the pool"

# The ownership rules' plain number fields, in the order the form shows them.
RULE_NUMBERS = (
    ("protection_days", N_("Protection period for a new assignment (days)")),
    ("inactive_months", N_("Back to the pool after months without a purchase or referral")),
    ("no_deal_months", N_("Back to the pool after months without a deal")),
    ("warning_days", N_("Warn the rep this many days before a reclaim")),
    ("new_rep_days", N_("New reps get no pool members for (days)")),
    ("daily_pool_cap", N_("Pool members per rep per day, at most")),
    ("handover_days", N_("Reassign a leaving rep's members within (days)")),
    ("contact_deadline_hour", N_("Contacts are logged by this hour of the next working day")),
    ("refusal_retry_days", N_("Try again after a refusal (days)")),
    ("completeness_days", N_("Complete the archive within (days of the first purchase)")),
    ("rotation_months", N_("Rotate books every (months)")),
    ("introduction_days", N_("Introduce the new rep within (days)")),
)
COMPLETENESS_FIELDS = get_args(rep_schemas.CompletenessField)


async def movable_reps(principal: Principal) -> list:
    """Active reps the caller may move a member to: the department's for a manager."""
    return [
        s
        for s in await staff_service.list_staff(department=principal.department_limit)
        if s.role == "rep" and s.active
    ]


class ManagerPages(Controller):
    path = "/"

    # --- move one member ----------------------------------------------------------------

    async def _move_page(
        self,
        request: Request,
        member_id: UUID,
        error: DomainError | None = None,
        values: dict | None = None,
    ) -> Template:
        principal = staff(request, "reps:assign")
        member = await members.get_member(member_id, principal)
        return form_page(
            request,
            "manager_move.html",
            SAVED,
            error,
            m=member,
            number=members.format_number,
            reps=await movable_reps(principal),
            periods=await assignments.history(member_id, principal),
            form=values or {},
            pool=POOL,
        )

    @get("/members/{member_id:uuid}/move")
    async def move_form(self, request: Request, member_id: FromPath[UUID]) -> Template:
        return await self._move_page(request, member_id)

    @post(
        "/members/{member_id:uuid}/move",
        opt=covers("PUT /api/v1/members/{member_id:uuid}/assignment"),
    )
    async def move(self, request: Request, member_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "reps:assign")
        values = await form(request)
        try:
            chosen = str(values.get("rep_id", "")).strip()
            if not chosen:
                raise InvalidInput("choose one", field="rep_id")
            data = convert(
                {
                    "rep_id": None if chosen == POOL else chosen_id(chosen, "rep_id"),
                    "reason": str(values.get("reason", "")).strip(),
                },
                rep_schemas.TransferCreate,
            )
            # The same call as the API's; a repeated submit finds the member there already.
            result = await assignments.transfer(member_id, data, principal)
        except DomainError as exc:
            return await self._move_page(request, member_id, exc, values)
        saved = "moved" if result.assigned else "unchanged"
        return back(f"/console/members/{member_id}/move?saved={saved}")

    # --- who opened the archive ---------------------------------------------------------

    @get(
        "/members/{member_id:uuid}/views",
        opt=covers("GET /api/v1/members/{member_id:uuid}/views"),
    )
    async def views(self, request: Request, member_id: FromPath[UUID]) -> Template:
        principal = staff(request, "audit:read")
        member = await members.get_member(member_id, principal)
        return page(
            request,
            "manager_views.html",
            m=member,
            number=members.format_number,
            views=await contacts.views_of(member_id, principal),
        )

    # --- reps, levels, service teams and sponsors ---------------------------------------

    async def _reps_page(self, request: Request, error: DomainError | None = None) -> Template:
        principal = staff(request, "reps:assign")
        tiers = [t for t in await tier_service.list_tiers() if t.enabled]
        return form_page(
            request,
            "manager_reps.html",
            SAVED,
            error,
            reps=await levels.department_reps(principal),
            level_choices=rep_settings.LEVELS,
            tier_min_level=(await rep_settings.get_rep_settings()).tier_min_level,
            tiers=tiers,
            upper=await levels.upper_tier_members(principal),
            number=members.format_number,
        )

    @get("/team/reps", opt=covers("GET /api/v1/reps"))
    async def reps(self, request: Request) -> Template:
        return await self._reps_page(request)

    @post(
        "/team/reps/{staff_id:uuid}/level",
        opt=covers("PUT /api/v1/reps/{staff_id:uuid}/level"),
    )
    async def set_level(self, request: Request, staff_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "reps:assign")
        values = await form(request)
        try:
            data = convert({"level": values.get("level", "")}, rep_schemas.RepLevelUpdate)
            await levels.set_level(staff_id, data, principal)
        except DomainError as exc:
            return await self._reps_page(request, exc)
        return back("/console/team/reps?saved=level")

    # --- ownership rules ----------------------------------------------------------------

    async def _settings_page(
        self, request: Request, error: DomainError | None = None, values: dict | None = None
    ) -> Template:
        staff(request, "reps:configure")
        current = await rep_settings.get_rep_settings()
        tiers = [t for t in await tier_service.list_tiers() if t.enabled]
        return form_page(
            request,
            "manager_rep_settings.html",
            SAVED,
            error,
            s=current,
            form=values,
            numbers=RULE_NUMBERS,
            tiers=tiers,
            level_choices=rep_settings.LEVELS,
            completeness_fields=COMPLETENESS_FIELDS,
        )

    @get("/rep-settings", opt=covers("GET /api/v1/rep-settings"))
    async def rep_settings_form(self, request: Request) -> Template:
        return await self._settings_page(request)

    @post("/rep-settings", opt=covers("PUT /api/v1/rep-settings"))
    async def save_rep_settings(self, request: Request) -> Template | Redirect:
        principal = staff(request, "reps:configure")
        values = await form(request)
        try:
            data = convert(settings_input(values), rep_schemas.RepSettingsUpdate)
            await rep_settings.put_rep_settings(data, principal)
        except DomainError as exc:
            return await self._settings_page(request, exc, values)
        return back("/console/rep-settings?saved=settings")


def settings_input(values: dict[str, Any]) -> dict[str, Any]:
    """The ownership-rules form as the API's input: a blank per-tier field means no rule
    for that tier."""
    data: dict[str, Any] = {name: str(values.get(name, "")).strip() for name, _ in RULE_NUMBERS}
    for name, value in data.items():
        if value == "":
            raise InvalidInput("is required", field=name)
    data["tier_no_deal_months"] = {}
    data["tier_min_level"] = {}
    for key, value in values.items():
        value = str(value).strip() if not isinstance(value, list) else value
        if key.startswith("no_deal__") and value:
            data["tier_no_deal_months"][key.removeprefix("no_deal__")] = value
        elif key.startswith("min_level__") and value:
            data["tier_min_level"][key.removeprefix("min_level__")] = value
    chosen = values.get("completeness_fields", [])
    data["completeness_fields"] = chosen if isinstance(chosen, list) else [chosen]
    return data
