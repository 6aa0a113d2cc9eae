"""Exports (admins, general managers): the downloads on one page (members, ledger for a
period, points liability as CSV, scorecards) and the liability report itself. Downloads go
through the browser session and call the same services as the API."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated

from litestar import Controller, Request, get
from litestar.params import QueryParameter
from litestar.response import Response, Stream, Template

from loyalty.console.common import form_page, staff
from loyalty.errors import DomainError, InvalidInput
from loyalty.exports import service as exports
from loyalty.http.responses import csv_download, csv_stream
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.settings import get_settings

Text = Annotated[str, QueryParameter(max_length=20)]
From = Annotated[str, QueryParameter(name="from", max_length=20)]


def _day(value: str, field: str) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(N_("is not a date"), field=field) from None


def _period(start: str, end: str) -> tuple[datetime | None, datetime | None]:
    """From the start of `start` to the end of `end` (both days included), business time."""
    tz = get_settings().tz
    first, last = _day(start, "from"), _day(end, "to")
    if first and last and last < first:
        raise InvalidInput(N_("must not be before from"), field="to")
    return (
        datetime.combine(first, time(0), tz) if first else None,
        datetime.combine(last + timedelta(days=1), time(0), tz) if last else None,
    )


def _cost(value: str) -> Decimal | None:
    if not value.strip():
        return None
    try:
        return Decimal(value.strip())
    except InvalidOperation:
        raise InvalidInput(N_("must be a number"), field="cost_per_point") from None


class ExportPages(Controller):
    path = "/exports"

    @get("/", opt=covers("GET /api/v1/exports/liability"))
    async def exports_page(
        self, request: Request, cost_per_point: Text = "", from_: From = "", to: Text = ""
    ) -> Template:
        principal = staff(request, "exports:read")
        error: DomainError | None = None
        report = None
        try:
            report = await exports.liability(principal, _cost(cost_per_point))
        except DomainError as exc:
            error = exc
        return form_page(
            request,
            "exports.html",
            {},
            error,
            report=report,
            form={"cost_per_point": cost_per_point, "from": from_, "to": to},
        )

    @get("/members.csv", opt=covers("GET /api/v1/exports/members.csv"))
    async def members_csv(self, request: Request) -> Stream:
        principal = staff(request, "members:read")
        return csv_stream(exports.members_csv(principal), "members.csv")

    @get("/ledger.csv", opt=covers("GET /api/v1/exports/ledger.csv"))
    async def ledger_csv(
        self, request: Request, from_: From = "", to: Text = ""
    ) -> Stream | Template:
        principal = staff(request, "exports:read")
        try:
            start, end = _period(from_, to)
        except DomainError as exc:
            return form_page(
                request,
                "exports.html",
                {},
                exc,
                report=None,
                form={"cost_per_point": "", "from": from_, "to": to},
            )
        return csv_stream(exports.ledger_csv(principal, start, end), "ledger.csv")

    @get("/liability.csv", opt=covers("GET /api/v1/exports/liability.csv"))
    async def liability_csv(self, request: Request, cost_per_point: Text = "") -> Response:
        principal = staff(request, "exports:read")
        text = await exports.liability_csv(principal, _cost(cost_per_point))
        return csv_download(text, "liability.csv")
