"""Tier pages beside the ladder (`admin.py`): the what-if simulation of a proposed ladder
(admins; nothing changes), and a member's tier override (managers and above), linked from
the member page. Same services as the API."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from loyalty.console.common import back, convert, form, form_page, local_datetime, staff
from loyalty.errors import DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.members import service as members
from loyalty.tiers import evaluation
from loyalty.tiers import schemas as tier_schemas
from loyalty.tiers import service as tiers

SAVED = {
    "override": N_("The override is set; the member keeps this tier until its end."),
    "ended": N_("The override is ended; the member is back on the tier they qualify for."),
}
_NESTED = re.compile(r"^tiers\[(\d+)\]\.(\w+)$")


def _number(value: Any, field: str, kind: type) -> Any:
    """A number typed into the simulation's table, or that cell's error."""
    try:
        return kind(str(value).strip())
    except (ValueError, ArithmeticError):
        raise InvalidInput(N_("must be a number"), field=field) from None


class SimulationPages(Controller):
    path = "/tiers/simulate"

    async def _page(
        self,
        request: Request,
        result: tier_schemas.Simulation | None = None,
        error: DomainError | None = None,
        values: dict | None = None,
    ) -> Template:
        staff(request, "tiers:manage")
        return form_page(
            request,
            "tier_simulation.html",
            {},
            error,
            ladder=await tiers.list_tiers(),
            result=result,
            form=values or {},
        )

    @get("/")
    async def simulation(self, request: Request) -> Template:
        return await self._page(request)

    @post("/", opt=covers("POST /api/v1/tiers/simulate"))
    async def simulate(self, request: Request) -> Template:
        """What an evaluation now would do with the ladder as typed; nothing is saved."""
        staff(request, "tiers:manage")
        values = await form(request)
        codes = [t.code for t in await tiers.list_tiers()]
        try:
            body: dict[str, Any] = {
                "tiers": [
                    {
                        "code": code,
                        "rank": _number(values.get(f"rank-{code}", ""), f"rank-{code}", int),
                        "threshold": _number(
                            values.get(f"threshold-{code}", ""), f"threshold-{code}", Decimal
                        ),
                        "enabled": values.get(f"enabled-{code}") == "on",
                    }
                    for code in codes
                ]
            }
            result = await evaluation.simulate(convert(body, tier_schemas.SimulationCreate))
        except DomainError as exc:
            # A tier's field ("tiers[1].threshold") is that tier's input ("threshold-silver").
            found = _NESTED.match(exc.field or "")
            if found and int(found.group(1)) < len(codes):
                exc.field = f"{found.group(2)}-{codes[int(found.group(1))]}"
            return await self._page(request, error=exc, values=values)
        return await self._page(request, result=result, values=values)


class OverridePages(Controller):
    path = "/members/{member_id:uuid}/tier"

    async def _page(
        self,
        request: Request,
        member_id: UUID,
        error: DomainError | None = None,
        values: dict | None = None,
    ) -> Template:
        principal = staff(request, "tiers:override")
        status = await tiers.status(member_id, principal)  # a member out of reach: 404
        return form_page(
            request,
            "tier_override.html",
            SAVED,
            error,
            m=await members.get_member(member_id, principal),
            tier_status=status,
            ladder=[t for t in await tiers.list_tiers() if t.enabled],
            form=values or {},
            number=members.format_number,
        )

    @get("/", opt=covers("GET /api/v1/members/{member_id:uuid}/tier"))
    async def override_page(self, request: Request, member_id: FromPath[UUID]) -> Template:
        return await self._page(request, member_id)

    @post("/override", opt=covers("PUT /api/v1/members/{member_id:uuid}/tier/override"))
    async def set_override(
        self, request: Request, member_id: FromPath[UUID]
    ) -> Template | Redirect:
        principal = staff(request, "tiers:override")
        values = await form(request)
        try:
            until = local_datetime(str(values.get("until", "")), "until")
            if until is None:
                raise InvalidInput(N_("is required"), field="until")
            data = convert(
                {
                    "tier": values.get("tier", ""),
                    "reason": str(values.get("reason", "")).strip(),
                    "until": until,
                },
                tier_schemas.TierOverrideUpdate,
            )
            await tiers.set_override(member_id, data, principal)
        except DomainError as exc:
            return await self._page(request, member_id, exc, values)
        return back(f"/console/members/{member_id}/tier?saved=override")

    @post("/override/end", opt=covers("DELETE /api/v1/members/{member_id:uuid}/tier/override"))
    async def end_override(
        self, request: Request, member_id: FromPath[UUID]
    ) -> Template | Redirect:
        principal = staff(request, "tiers:override")
        try:
            await tiers.end_override(member_id, principal)
        except DomainError as exc:
            return await self._page(request, member_id, exc)
        return back(f"/console/members/{member_id}/tier?saved=ended")
