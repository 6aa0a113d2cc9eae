"""Manager pages: the pool and hand-out, the handover queue, swap approvals, the reclaim
preview and the team's activity. The services decide who may do what (a manager acts in
their department, general managers and admins everywhere)."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from loyalty.auth import Principal
from loyalty.console.common import back, chosen_id, convert, form, form_page, page, staff
from loyalty.errors import DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.reps import handovers, pool, reclaim, team_figures
from loyalty.reps import schemas as rep_schemas
from loyalty.reps import swaps as rep_swaps
from loyalty.staff import service as staff_service
from loyalty.tiers import service as tier_service

SAVED = {
    "assigned": N_("The members are handed out."),
    "handover": N_("The member has a new rep."),
    "approved": N_("The swap is approved: the members changed reps."),
    "refused": N_("The swap is refused."),
    "reclaimed": N_("The member is back in the pool."),
}


async def team_reps(principal: Principal) -> list:
    """Active reps the caller may hand members to."""
    department = principal.department_limit
    return [
        s
        for s in await staff_service.list_staff(department=department)
        if s.role == "rep" and s.active
    ]


class TeamPages(Controller):
    path = "/"

    # --- pool ---------------------------------------------------------------------------

    async def _pool_page(
        self, request: Request, error: DomainError | None = None, values: dict | None = None
    ) -> Template:
        principal = staff(request, "reps:assign")
        waiting = await pool.pool(principal, 200)
        return form_page(
            request,
            "pool.html",
            SAVED,
            error,
            pool=waiting,
            reps=await team_reps(principal),
            form=values or {},
        )

    @get("/pool", opt=covers("GET /api/v1/pool"))
    async def pool(self, request: Request) -> Template:
        return await self._pool_page(request)

    @post("/pool", opt=covers("POST /api/v1/pool/assignments"))
    async def assign(self, request: Request) -> Template | Redirect:
        principal = staff(request, "reps:assign")
        values = await form(request)
        chosen = values.get("member_ids", [])
        chosen = chosen if isinstance(chosen, list) else [chosen]
        try:
            if not chosen:
                raise InvalidInput("tick at least one member", field="member_ids")
            data = convert(
                {
                    "member_ids": chosen,
                    "rep_id": chosen_id(values.get("rep_id"), "rep_id"),
                    "reason": values.get("reason", ""),
                },
                rep_schemas.PoolAssignmentCreate,
            )
            await pool.assign_from_pool(data, principal)
        except DomainError as exc:
            return await self._pool_page(request, exc, values)
        return back("/console/pool?saved=assigned")

    # --- handovers ----------------------------------------------------------------------

    async def _handover_page(self, request: Request, error: DomainError | None = None) -> Template:
        principal = staff(request, "reps:assign")
        return form_page(
            request,
            "handovers.html",
            SAVED,
            error,
            queue=await handovers.handover_queue(principal),
            reps=await team_reps(principal),
        )

    @get("/handovers", opt=covers("GET /api/v1/handovers"))
    async def handovers(self, request: Request) -> Template:
        return await self._handover_page(request)

    @post(
        "/handovers/{handover_id:uuid}",
        opt=covers("POST /api/v1/handovers/{handover_id:uuid}/assign"),
    )
    async def resolve(self, request: Request, handover_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "reps:assign")
        values = await form(request)
        try:
            data = convert(
                {
                    "rep_id": chosen_id(values.get("rep_id"), "rep_id"),
                    "reason": values.get("reason") or "handover",
                },
                rep_schemas.TransferCreate,
            )
            await handovers.resolve_handover(handover_id, data, principal)
        except DomainError as exc:
            return await self._handover_page(request, exc)
        return back("/console/handovers?saved=handover")

    # --- swaps --------------------------------------------------------------------------

    async def _swap_page(self, request: Request, error: DomainError | None = None) -> Template:
        principal = staff(request, "reps:assign")
        swaps = await rep_swaps.list_swaps(principal, None)
        names = await _names(principal, swaps)
        return form_page(
            request,
            "swaps.html",
            SAVED,
            error,
            pending=[s for s in swaps if s.status == "pending"],
            decided=[s for s in swaps if s.status != "pending"][:50],
            names=names,
        )

    @get("/swaps", opt=covers("GET /api/v1/swaps"))
    async def swaps(self, request: Request) -> Template:
        return await self._swap_page(request)

    @post(
        "/swaps/{swap_id:uuid}/{decision:str}",
        opt=covers(
            "POST /api/v1/swaps/{swap_id:uuid}/approve", "POST /api/v1/swaps/{swap_id:uuid}/refuse"
        ),
    )
    async def decide(
        self, request: Request, swap_id: FromPath[UUID], decision: FromPath[str]
    ) -> Template | Redirect:
        principal = staff(request, "reps:assign")
        if decision not in ("approve", "refuse"):
            raise InvalidInput("approve or refuse", field="decision")
        values = await form(request)
        try:
            data = convert({"note": values.get("note", "")}, rep_schemas.SwapDecisionCreate)
            await rep_swaps.decide_swap(swap_id, decision == "approve", data, principal)
        except DomainError as exc:
            return await self._swap_page(request, exc)
        return back(f"/console/swaps?saved={'approved' if decision == 'approve' else 'refused'}")

    # --- reclaims -----------------------------------------------------------------------

    async def _reclaim_page(self, request: Request, error: DomainError | None = None) -> Template:
        principal = staff(request, "reps:assign")
        return form_page(
            request,
            "reclaims.html",
            SAVED,
            error,
            candidates=await reclaim.reclaim_preview(principal),
        )

    @get("/reclaims", opt=covers("GET /api/v1/reclaims/preview"))
    async def reclaims(self, request: Request) -> Template:
        return await self._reclaim_page(request)

    @post("/reclaims/{member_id:uuid}", opt=covers("POST /api/v1/members/{member_id:uuid}/reclaim"))
    async def take_back(self, request: Request, member_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "reps:assign")
        try:
            await reclaim.take_back(member_id, principal)
        except DomainError as exc:
            return await self._reclaim_page(request, exc)
        return back("/console/reclaims?saved=reclaimed")

    # --- team activity ------------------------------------------------------------------

    @get("/team")
    async def team(self, request: Request) -> Template:
        principal = staff(request, "reps:assign")
        activity = await team_figures.team_activity(principal, weeks=8)
        per_tier = await team_figures.members_per_tier_per_rep(principal)
        weekly = [
            {
                "week": week,
                "reps": [
                    (rep["username"], rep["per_week"].get(week, 0)) for rep in activity["reps"]
                ],
            }
            for week in activity["weeks"]
        ]
        for row in weekly:
            row["total"] = sum(count for _, count in row["reps"])
        tiers = [t for t in (await tier_service.list_tiers()) if t.enabled]
        return page(
            request,
            "team.html",
            activity=activity,
            weekly=weekly,
            busiest=max((row["total"] for row in weekly), default=0) or 1,
            per_tier=per_tier,
            largest_book=max((rep["total"] for rep in per_tier), default=0) or 1,
            tiers=tiers,
            rep_index={rep["username"]: i % 8 for i, rep in enumerate(activity["reps"])},
        )


async def _names(principal: Principal, swaps: list) -> dict[UUID, str]:
    """Member and rep names for the swap list (members through the visibility rules)."""
    from loyalty.members import service as members

    names: dict[UUID, str] = {}
    for swap in swaps:
        for member_id in (swap.member_a, swap.member_b):
            if member_id not in names:
                try:
                    found = await members.get_member(member_id, principal)
                    names[member_id] = f"{found.name} ({members.format_number(found.number)})"
                except DomainError:
                    names[member_id] = str(member_id)[:8]
    for s in await staff_service.list_staff():
        names[s.id] = s.display_name if s.display_name != s.username else s.username
    return names
