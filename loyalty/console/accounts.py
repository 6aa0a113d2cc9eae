"""Account-manager pages: monthly scorecards (with a CSV download), book rotation (propose,
preview, adjust, apply), incomplete archives and reassignment flags. Only the services in
`loyalty.reps.performance`, `loyalty.reps.rotation`, `loyalty.reps.service` and
`loyalty.reps.teams` are called, so the API's rules decide what each person sees."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from loyalty.auth import Principal
from loyalty.console.common import (
    DepartmentQuery,
    MonthQuery,
    back,
    chosen_id,
    convert,
    csv_download,
    form,
    form_page,
    page,
    problem,
    report_month,
    staff,
    this_month,
)
from loyalty.errors import DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.clock import local_today
from loyalty.infrastructure.i18n import N_
from loyalty.reps import performance, rotation, teams
from loyalty.reps import schemas as rep_schemas
from loyalty.reps import service as reps
from loyalty.staff import service as staff_service

SAVED = {
    "adjusted": N_("The move is changed."),
    "applied": N_("The rotation is applied: the members have their new reps."),
}


async def _departments(principal: Principal) -> list[str]:
    """The departments the caller may rotate: a manager's own, everyone's for those above."""
    if principal.department_limit is not None:
        return [principal.department_limit] if principal.department_limit else []
    found = {s.department for s in await staff_service.list_staff() if s.department}
    return sorted(found)


class AccountPages(Controller):
    path = "/"

    # --- scorecards ---------------------------------------------------------------------

    @get("/scorecards", opt=covers("GET /api/v1/scorecards"))
    async def scorecards(
        self, request: Request, month: MonthQuery = "", department: DepartmentQuery = ""
    ) -> Template:
        principal = staff(request, "reps:assign")
        month = report_month(month)
        error = None
        try:
            rows = await performance.scorecard(principal, month, department.strip() or None)
        except InvalidInput as exc:
            rows, error = [], problem(exc)
            month = this_month()
        most_spend = max((row.spend for row in rows), default=0) or 1
        most_contacts = max((row.contacts for row in rows), default=0) or 1
        return page(
            request,
            "scorecards.html",
            status=422 if error else 200,
            rows=rows,
            month=month,
            department=department.strip(),
            departments=await _departments(principal),
            most_spend=most_spend,
            most_contacts=most_contacts,
            error=error,
        )

    @get("/scorecards.csv", opt=covers("GET /api/v1/scorecards.csv"))
    async def scorecards_csv(
        self, request: Request, month: MonthQuery = "", department: DepartmentQuery = ""
    ) -> Response:
        principal = staff(request, "reps:assign")
        month = report_month(month)
        rows = await performance.scorecard(principal, month, department.strip() or None)
        return csv_download(performance.scorecard_csv(rows), f"scorecards-{month}.csv")

    # --- rotation -----------------------------------------------------------------------

    @get("/rotations")
    async def rotations(self, request: Request) -> Template:
        principal = staff(request, "reps:assign")
        return page(
            request,
            "rotation.html",
            plan=None,
            departments=await _departments(principal),
        )

    @post("/rotations", opt=covers("POST /api/v1/rotations"))
    async def propose(self, request: Request) -> Template | Redirect:
        principal = staff(request, "reps:assign")
        values = await form(request)
        department = str(values.get("department") or principal.department or "")
        try:
            data = convert({"department": department}, rep_schemas.RotationCreate)
            plan = await rotation.propose(data, principal)
        except DomainError as exc:
            return form_page(
                request,
                "rotation.html",
                SAVED,
                exc,
                plan=None,
                departments=await _departments(principal),
            )
        return back(f"/console/rotations/{plan.id}")

    async def _plan_page(
        self, request: Request, rotation_id: UUID, error: DomainError | None = None
    ) -> Template:
        principal = staff(request, "reps:assign")
        plan = await rotation.get_rotation(rotation_id, principal)
        candidates = [
            s
            for s in await staff_service.list_staff(department=plan.department)
            if s.role == "rep" and s.active
        ]
        return form_page(
            request,
            "rotation.html",
            SAVED,
            error,
            plan=plan,
            candidates=candidates,
            departments=[],
        )

    @get("/rotations/{rotation_id:uuid}", opt=covers("GET /api/v1/rotations/{rotation_id:uuid}"))
    async def plan(self, request: Request, rotation_id: FromPath[UUID]) -> Template:
        return await self._plan_page(request, rotation_id)

    @post(
        "/rotations/{rotation_id:uuid}/moves/{member_id:uuid}",
        opt=covers("PUT /api/v1/rotations/{rotation_id:uuid}/moves/{member_id:uuid}"),
    )
    async def adjust(
        self, request: Request, rotation_id: FromPath[UUID], member_id: FromPath[UUID]
    ) -> Template | Redirect:
        principal = staff(request, "reps:assign")
        values = await form(request)
        try:
            data = convert(
                {"rep_id": chosen_id(values.get("rep_id"), "rep_id")},
                rep_schemas.RotationMoveUpdate,
            )
            await rotation.adjust(rotation_id, member_id, data, principal)
        except DomainError as exc:
            return await self._plan_page(request, rotation_id, exc)
        return back(f"/console/rotations/{rotation_id}?saved=adjusted")

    @post(
        "/rotations/{rotation_id:uuid}/apply",
        opt=covers("POST /api/v1/rotations/{rotation_id:uuid}/apply"),
    )
    async def apply(self, request: Request, rotation_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "reps:assign")
        values = await form(request)
        try:
            if values.get("confirm") != "yes":
                raise InvalidInput("tick the box to confirm the moves", field="confirm")
            await rotation.apply(rotation_id, principal)
        except DomainError as exc:
            return await self._plan_page(request, rotation_id, exc)
        return back(f"/console/rotations/{rotation_id}?saved=applied")

    # --- lists --------------------------------------------------------------------------

    @get("/archives", opt=covers("GET /api/v1/incomplete-archives"))
    async def archives(self, request: Request) -> Template:
        principal = staff(request, "members:read")
        rows = await performance.incomplete_archives(principal)
        return page(request, "archives.html", rows=rows, today=local_today())

    @get("/flags", opt=covers("GET /api/v1/reassignment-flags"))
    async def flags(self, request: Request) -> Template:
        principal = staff(request, "reps:assign")
        return page(request, "flags.html", rows=await reps.reassignment_flags(principal))


async def member_accounts(member_id: UUID, principal: Principal) -> dict[str, Any]:
    """What the member page shows of account management: stage, completeness, service team
    and, for managers, the staff who may join it."""
    context: dict[str, Any] = {
        "lifecycle": await performance.lifecycle(member_id, principal),
        "service_team": await teams.service_team(member_id, principal),
        "team_staff": [],
        "can_set_team": principal.can("reps:assign"),
    }
    if context["can_set_team"]:
        department = principal.department_limit
        context["team_staff"] = [
            s for s in await staff_service.list_staff(department=department) if s.active
        ]
    return context


# A team's colleagues, chosen beside its lead.
TEAM_ROLES = tuple(role for role in teams.TEAM_ROLES if role != "lead")
TEAM_ROWS = 3


async def service_team_input(request: Request) -> rep_schemas.ServiceTeamUpdate:
    """The service-team form: a lead and up to three colleagues with roles (blank rows skip)."""
    values = await form(request)
    people = []
    for i in range(TEAM_ROWS):
        chosen = str(values.get(f"staff_{i}", "")).strip()
        if chosen:
            people.append(
                {"staff_id": chosen_id(chosen, f"staff_{i}"), "role": values.get(f"role_{i}", "")}
            )
    return convert(
        {"lead_id": chosen_id(values.get("lead_id"), "lead_id"), "members": people},
        rep_schemas.ServiceTeamUpdate,
    )
