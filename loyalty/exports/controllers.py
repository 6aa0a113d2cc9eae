"""Exports API: members (within the exporter's reach), ledger entries for a period, and the
points liability report."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from litestar import Controller, Request, get
from litestar.params import QueryParameter
from litestar.response import Response, Stream

from loyalty.auth import CurrentPrincipal, requires
from loyalty.exports import schemas, service
from loyalty.http.middleware import rfc3339_query
from loyalty.http.openapi import problems
from loyalty.http.responses import CSV, csv_download, csv_stream
from loyalty.infrastructure.schemas import DECIMAL_PATTERN

CostPerPoint = Annotated[
    Decimal | None, QueryParameter(schema_extra={"pattern": DECIMAL_PATTERN})
]  # 0 to 1000: checked by the service (422)


class ExportController(Controller):
    path = "/api/v1/exports"
    tags = ["exports"]

    @get(
        "/members.csv",
        summary="Members as CSV",
        guards=[requires("members:read")],
        media_type=CSV,
    )
    async def members(self, principal: CurrentPrincipal) -> Stream:
        """Only the members the caller may see (a rep: their own; a manager: the department
        and the pool). Each exported archive is recorded as viewed."""
        return csv_stream(service.members_csv(principal), "members.csv")

    @get(
        "/ledger.csv",
        summary="Ledger entries for a period as CSV",
        guards=[requires("exports:read")],
        responses=problems(422),
        media_type=CSV,
    )
    async def ledger(
        self,
        request: Request,
        principal: CurrentPrincipal,
        from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
        to: Annotated[datetime | None, QueryParameter()] = None,
    ) -> Stream:
        """Entries recorded in [from, to), oldest first."""
        rfc3339_query(request, "from", "to")
        service._period(from_, to)
        return csv_stream(service.ledger_csv(principal, from_, to), "ledger.csv")

    @get(
        "/liability.csv",
        summary="Points liability as CSV",
        guards=[requires("exports:read")],
        responses=problems(422),
        media_type=CSV,
    )
    async def liability_csv(
        self, principal: CurrentPrincipal, cost_per_point: CostPerPoint = None
    ) -> Response[str]:
        text = await service.liability_csv(principal, cost_per_point)
        return csv_download(text, "liability.csv")

    @get(
        "/liability",
        summary="The points liability report",
        guards=[requires("exports:read")],
        responses=problems(422),
    )
    async def liability(
        self, principal: CurrentPrincipal, cost_per_point: CostPerPoint = None
    ) -> schemas.Liability:
        """Outstanding points (available + pending - owed) by tier and by expiry month, valued
        at `cost_per_point` (default LOYALTY_POINT_VALUE)."""
        return await service.liability(principal, cost_per_point)
