"""The monthly movement report in the console: members who moved up or down a tier, valuable
members whose spend is falling, members lost and won back, counted by department and by rep,
as a bar chart, tables and a CSV download. Only `loyalty.marketing.reports` is called, with
the API's permission (`marketing:report`), so the page shows what the API shows."""

from __future__ import annotations

from litestar import Controller, Request, Response, get
from litestar.response import Template

from loyalty.console.common import (
    MonthQuery,
    csv_download,
    page,
    problem,
    report_month,
    staff,
    this_month,
)
from loyalty.errors import InvalidInput
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.i18n import gettext as _
from loyalty.marketing import reports

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

    @get("/movement")
    async def movement(self, request: Request, month: MonthQuery = "") -> Template:
        staff(request, PERMISSION)
        month = report_month(month)
        error = None
        try:
            report = await reports.movement(month)
        except InvalidInput as exc:
            error = problem(exc)
            month = this_month()
            report = await reports.movement(month)
        counts = {key: getattr(report.totals, key) for key in CATEGORIES}
        return page(
            request,
            "movement.html",
            status=422 if error else 200,
            report=report,
            month=month,
            categories={key: _(heading) for key, heading in CATEGORIES.items()},
            counts=counts,
            most=max(counts.values(), default=0) or 1,
            by_category={
                key: [row for row in report.members if row.movement == key] for key in CATEGORIES
            },
            error=error,
        )

    @get("/movement.csv")
    async def movement_csv(self, request: Request, month: MonthQuery = "") -> Response:
        staff(request, PERMISSION)
        month = report_month(month)
        report = await reports.movement(month)
        return csv_download(reports.to_csv(report), f"movement-{month}.csv")
