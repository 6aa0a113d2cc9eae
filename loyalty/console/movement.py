"""The monthly movement report in the console: members who moved up or down a tier, valuable
members whose spend is falling, members lost and won back, counted by department and by rep,
as a bar chart, tables and a CSV download. Only `loyalty.marketing.reports` is called, with
the API's permission (`marketing:report`), so the page shows what the API shows."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get
from litestar.response import Template

from loyalty.auth import Principal
from loyalty.console.common import (
    MonthQuery,
    csv_download,
    field_errors,
    page,
    problem,
    report_month,
    staff,
    this_month,
)
from loyalty.errors import DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.i18n import gettext as _
from loyalty.marketing import reports
from loyalty.marketing.schemas import MovementReport

PERMISSION = "marketing:report"

# The report's categories, in its order, with their headings.
CATEGORIES = {
    "up": N_("Moved up a tier"),
    "down": N_("Moved down a tier"),
    "falling": N_("Valuable members spending less"),
    "lost": N_("Members lost"),
    "won_back": N_("Members won back"),
}


class MovementPages(Controller):
    path = "/"

    @get("/movement", opt=covers("GET /api/v1/reports/movement/{month:str}"))
    async def movement(self, request: Request, month: MonthQuery = "") -> Template:
        staff(request, PERMISSION)
        return await movement_page(request, report_month(month))

    @get("/movement.csv", opt=covers("GET /api/v1/reports/movement/{month:str}/csv"))
    async def movement_csv(self, request: Request, month: MonthQuery = "") -> Response:
        principal = staff(request, PERMISSION)
        month = report_month(month)
        report = without_names(await reports.movement(month), principal)
        return csv_download(reports.to_csv(report), f"movement-{month}.csv")


def without_names(report: MovementReport, principal: Principal) -> MovementReport:
    """Marketing staff reach members through segments, not archives: without member access
    the report names nobody (the member number stays)."""
    if principal.can("members:read"):
        return report
    members = [msgspec.structs.replace(row, name="") for row in report.members]
    return msgspec.structs.replace(report, members=members)


# The notices after the report's actions (marketing.py): how many members, how many new.
ACTIONS_DONE = {
    "segment": N_(
        "The segment holds the month's %(members)s declining valuable members; %(added)s were added now."
    ),
    "tasks": N_(
        "%(added)s follow-up tasks were given to reps, for %(members)s declining valuable members (each member once a month)."
    ),
}


def _segment_id(value: str | None) -> UUID | None:
    try:
        return UUID(value or "")
    except ValueError:
        return None


def _number(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


async def movement_page(
    request: Request,
    month: str,
    action_error: DomainError | None = None,
    action_form: dict[str, Any] | None = None,
) -> Template:
    principal = staff(request, PERMISSION)
    error = None
    try:
        report = await reports.movement(month)
    except InvalidInput as exc:
        error = problem(exc)
        month = this_month()
        report = await reports.movement(month)
    report = without_names(report, principal)
    counts = {key: getattr(report.totals, key) for key in CATEGORIES}
    done = request.query_params.get("done")
    return page(
        request,
        "movement.html",
        status=422 if error else (action_error.status_code if action_error else 200),
        report=report,
        month=month,
        categories={key: _(heading) for key, heading in CATEGORIES.items()},
        counts=counts,
        most=max(counts.values(), default=0) or 1,
        by_category={
            key: [row for row in report.members if row.movement == key] for key in CATEGORIES
        },
        error=error or (problem(action_error) if action_error else None),
        field_errors=field_errors(action_error),
        action_form=action_form or {},
        action_done=_(ACTIONS_DONE[done])
        % {
            "members": _number(request.query_params.get("members")),
            "added": _number(request.query_params.get("added")),
        }
        if done in ACTIONS_DONE
        else None,
        action_segment=_segment_id(request.query_params.get("segment"))
        if done == "segment"
        else None,
        can_segment=principal.can("segments:manage"),
    )
