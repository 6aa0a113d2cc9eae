"""Reps API: ownership (pool, assignment, reclaim, handovers, swaps), the visit brief, the
contact log, messages through the company's channels, follow-up tasks and notices."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from litestar import Controller, Response, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from loyalty.auth import CurrentPrincipal, authenticated, requires
from loyalty.http.openapi import problems
from loyalty.http.responses import CSV, csv_download
from loyalty.infrastructure.schemas import MONTH_PATTERN
from loyalty.reps import (
    assignments,
    contacts,
    follow_ups,
    handovers,
    levels,
    notices,
    performance,
    pool,
    reclaim,
    rotation,
    schemas,
    service,
    swaps,
    teams,
)
from loyalty.reps import settings as rep_settings
from loyalty.workflows import brief

# The scorecard's query, shared by its JSON and CSV forms.
Month = Annotated[str, QueryParameter(pattern=MONTH_PATTERN)]
Department = Annotated[str | None, QueryParameter(max_length=64)]


class OwnershipController(Controller):
    path = "/api/v1"
    tags = ["reps"]

    @get(
        "/rep-settings",
        summary="Ownership rules",
        guards=[requires("members:read")],
    )
    async def get_settings(self) -> schemas.RepSettings:
        """Protection period, reclaim months (and shorter ones by tier), warning days, new-rep
        period, daily pool cap, handover days, contact logging deadline."""
        return await rep_settings.get_rep_settings()

    @put(
        "/rep-settings",
        summary="Change the ownership rules",
        guards=[requires("reps:configure")],
    )
    async def put_settings(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.RepSettingsUpdate]
    ) -> schemas.RepSettings:
        return await rep_settings.put_rep_settings(data, principal)

    @get(
        "/pool",
        summary="The public pool",
        guards=[requires("reps:assign")],
    )
    async def pool(
        self,
        principal: CurrentPrincipal,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> list[schemas.PoolMember]:
        """Unassigned and reclaimed members (not those waiting in a handover queue)."""
        return await pool.pool(principal, limit)

    @post(
        "/pool/assignments",
        status_code=HTTP_200_OK,
        summary="Hand pool members to a rep",
        guards=[requires("reps:assign")],
        responses=problems(409, 422),
    )
    async def assign(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.PoolAssignmentCreate]
    ) -> schemas.AssignmentResult:
        """The manager of the rep's department (or above), recorded as the approval. A rep in
        their first month gets none; at most the daily cap per rep per day; all or nothing."""
        return await pool.assign_from_pool(data, principal)

    @put(
        "/members/{member_id:uuid}/assignment",
        summary="Move a member to another rep",
        guards=[requires("reps:assign")],
        responses=problems(422),
    )
    async def transfer(
        self,
        principal: CurrentPrincipal,
        member_id: FromPath[UUID],
        data: JSONBody[schemas.TransferCreate],
    ) -> schemas.AssignmentResult:
        """Managers within their department, general managers anywhere; `rep_id: null`
        returns the member to the pool. Reps cannot move members."""
        return await assignments.transfer(member_id, data, principal)

    @get(
        "/reps",
        summary="The department's reps and their levels",
        guards=[requires("reps:assign")],
    )
    async def reps(self, principal: CurrentPrincipal) -> list[schemas.DepartmentRep]:
        """Managers see their department's reps, general managers every rep; with each rep's
        level and how many members they serve."""
        return await levels.department_reps(principal)

    @put(
        "/reps/{staff_id:uuid}/level",
        summary="Set a rep's level",
        guards=[requires("reps:assign")],
        responses=problems(404, 422),
    )
    async def rep_level(
        self,
        principal: CurrentPrincipal,
        staff_id: FromPath[UUID],
        data: JSONBody[schemas.RepLevelUpdate],
    ) -> schemas.DepartmentRep:
        """The level decides which tiers a rep may serve (`tier_min_level` in the ownership
        rules). Managers set it for their department's reps, general managers for any."""
        return await levels.set_level(staff_id, data, principal)

    @get(
        "/members/{member_id:uuid}/assignments",
        summary="Who served a member, and when",
        guards=[requires("members:read")],
    )
    async def assignments(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> list[schemas.AssignmentPeriod]:
        return await assignments.history(member_id, principal)

    @get(
        "/reclaims/preview",
        summary="Members due to return to the pool",
        guards=[requires("reps:assign")],
    )
    async def reclaim_preview(self, principal: CurrentPrincipal) -> list[schemas.ReclaimCandidate]:
        """`protection`: may be taken back now (no service record in the protection period);
        `inactive` / `no_deal`: the date the daily job returns them to the pool."""
        return await reclaim.reclaim_preview(principal)

    @post(
        "/members/{member_id:uuid}/reclaim",
        status_code=HTTP_200_OK,
        summary="Take back a member not served in the protection period",
        guards=[requires("reps:assign")],
        responses=problems(409),
    )
    async def take_back(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> schemas.AssignmentResult:
        return await reclaim.take_back(member_id, principal)

    @get(
        "/handovers",
        summary="The handover queue",
        guards=[requires("reps:assign")],
    )
    async def handovers(self, principal: CurrentPrincipal) -> list[schemas.HandoverItem]:
        """Members of reps who left or moved, to reassign within the handover period."""
        return await handovers.handover_queue(principal)

    @post(
        "/handovers/{handover_id:uuid}/assign",
        status_code=HTTP_200_OK,
        summary="Give a handed-over member to a rep",
        guards=[requires("reps:assign")],
        responses=problems(409, 422),
    )
    async def resolve(
        self,
        principal: CurrentPrincipal,
        handover_id: FromPath[UUID],
        data: JSONBody[schemas.TransferCreate],
    ) -> schemas.AssignmentResult:
        return await handovers.resolve_handover(handover_id, data, principal)

    @post(
        "/swaps",
        summary="Ask to swap two members between their reps",
        guards=[requires("members:read")],
        responses=problems(422),
    )
    async def request_swap(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.SwapCreate]
    ) -> schemas.Swap:
        """A rep names one of their members and one of another rep's; the manager decides."""
        return await swaps.request_swap(data, principal)

    @get(
        "/swaps",
        summary="Swap requests",
        guards=[requires("members:read")],
    )
    async def swaps(
        self,
        principal: CurrentPrincipal,
        status: Annotated[
            Literal["pending", "approved", "refused"] | None, QueryParameter()
        ] = None,
    ) -> list[schemas.Swap]:
        return await swaps.list_swaps(principal, status)

    @post(
        "/swaps/{swap_id:uuid}/approve",
        status_code=HTTP_200_OK,
        summary="Approve a swap",
        guards=[requires("reps:assign")],
        responses=problems(409),
    )
    async def approve_swap(
        self,
        principal: CurrentPrincipal,
        swap_id: FromPath[UUID],
        data: JSONBody[schemas.SwapDecisionCreate],
    ) -> schemas.Swap:
        """The department's manager; across departments a general manager."""
        return await swaps.decide_swap(swap_id, True, data, principal)

    @post(
        "/swaps/{swap_id:uuid}/refuse",
        status_code=HTTP_200_OK,
        summary="Refuse a swap",
        guards=[requires("reps:assign")],
        responses=problems(409),
    )
    async def refuse_swap(
        self,
        principal: CurrentPrincipal,
        swap_id: FromPath[UUID],
        data: JSONBody[schemas.SwapDecisionCreate],
    ) -> schemas.Swap:
        return await swaps.decide_swap(swap_id, False, data, principal)

    @get("/notices", summary="My notices", guards=[authenticated])
    async def notices(
        self, principal: CurrentPrincipal, unread: Annotated[bool, QueryParameter()] = False
    ) -> list[schemas.Notice]:
        """Reclaim warnings, overdue handovers and follow-ups."""
        return await notices.notices(principal, unread)

    @post(
        "/notices/{notice_id:uuid}/read",
        status_code=HTTP_200_OK,
        summary="Mark a notice read",
        guards=[authenticated],
    )
    async def read_notice(
        self, principal: CurrentPrincipal, notice_id: FromPath[UUID]
    ) -> schemas.Notice:
        """Only the caller's own notice; marking it again keeps the first read time."""
        return await notices.mark_read(principal, notice_id)

    @post(
        "/notices/read",
        status_code=HTTP_200_OK,
        summary="Mark all my notices read",
        guards=[authenticated],
    )
    async def read_all_notices(self, principal: CurrentPrincipal) -> schemas.NoticesRead:
        return schemas.NoticesRead(marked=await notices.mark_all_read(principal))


class ContactController(Controller):
    path = "/api/v1"
    tags = ["contacts"]

    @get(
        "/members/{member_id:uuid}/brief",
        summary="The visit brief",
        guards=[requires("members:read")],
    )
    async def brief(self, principal: CurrentPrincipal, member_id: FromPath[UUID]) -> schemas.Brief:
        """Tier and service level, points, what keeps and what reaches a tier, recent
        purchases, last contacts, open follow-ups, what the member can redeem, referrals,
        household and preferences (in `member`). The view is audited."""
        return await brief.brief(member_id, principal)

    @get(
        "/members/{member_id:uuid}/contacts",
        summary="A member's contact log",
        guards=[requires("members:read")],
    )
    async def list_contacts(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> list[schemas.Contact]:
        return await contacts.member_contacts(member_id, principal)

    @post(
        "/members/{member_id:uuid}/contacts",
        summary="Log a contact",
        guards=[requires("contacts:write")],
        responses=problems(422),
    )
    async def add_contact(
        self,
        principal: CurrentPrincipal,
        member_id: FromPath[UUID],
        data: JSONBody[schemas.ContactCreate],
    ) -> schemas.Contact:
        """Visits, calls, messages, complaints and requests, with outcome and next step. A
        contact logged after the next working day at 10:00 (configurable) is flagged late.
        A visit, call or message closes the member's open follow-up tasks."""
        return await contacts.add_contact(member_id, data, principal)

    @post(
        "/members/{member_id:uuid}/messages",
        summary="Message a member",
        guards=[requires("contacts:write")],
        responses=problems(422),
    )
    async def message(
        self,
        principal: CurrentPrincipal,
        member_id: FromPath[UUID],
        data: JSONBody[schemas.MessageCreate],
    ) -> schemas.Contact:
        """Through the company's channel: the portal inbox, and email or text where the member
        consented. Logged on the member as an outbound contact."""
        return await contacts.send_message(member_id, data, principal)

    @get(
        "/members/{member_id:uuid}/views",
        summary="Who opened this archive",
        guards=[requires("audit:read")],
    )
    async def views(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> list[schemas.View]:
        return await contacts.views_of(member_id, principal)

    @get(
        "/tasks",
        summary="My follow-up tasks",
        guards=[requires("members:read")],
    )
    async def tasks(
        self, principal: CurrentPrincipal, days: Annotated[int, QueryParameter(ge=0, le=90)] = 7
    ) -> list[schemas.FollowUpTask]:
        """Due within `days`, overdue first. A rep sees their own; a manager the department's."""
        return await follow_ups.my_tasks(principal, days)


class AccountManagementController(Controller):
    path = "/api/v1"
    tags = ["reps"]

    @get(
        "/members/{member_id:uuid}/lifecycle",
        summary="A member's stage and archive completeness",
        guards=[requires("members:read")],
    )
    async def lifecycle(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> schemas.Lifecycle:
        """Stage: prospect_with_intent, prospect_without_intent, new_customer (first three
        months after the first purchase), regular, lapsing (6-12 months without buying) or
        lost; completeness of the configured archive fields, due two months after the first
        purchase."""
        return await performance.lifecycle(member_id, principal)

    @get(
        "/incomplete-archives",
        summary="Archives still missing basic facts",
        guards=[requires("members:read")],
    )
    async def incomplete(self, principal: CurrentPrincipal) -> list[schemas.IncompleteArchive]:
        """A rep's own members (a manager: the department's) who bought and whose archive
        lacks configured fields, with the deadline; overdue ones also become tasks."""
        return await performance.incomplete_archives(principal)

    @get(
        "/reassignment-flags",
        summary="Members whose tier outgrew their rep's level",
        guards=[requires("reps:assign")],
    )
    async def flags(self, principal: CurrentPrincipal) -> list[schemas.ReassignmentFlag]:
        return await service.reassignment_flags(principal)

    @get(
        "/scorecards",
        summary="Rep scorecards for a month",
        guards=[requires("reps:assign")],
        responses=problems(422),
    )
    async def scorecards(
        self, principal: CurrentPrincipal, month: Month, department: Department = None
    ) -> list[schemas.ScoreRow]:
        """Per rep: members gained and lost, their members' spend, purchases and tier moves,
        complaints and praise, contacts made, late logs, follow-up completion, archive
        completeness, referrals brought in. Managers see their department."""
        return await performance.scorecard(principal, month, department)

    @get(
        "/scorecards.csv",
        summary="Rep scorecards for a month as CSV",
        guards=[requires("reps:assign")],
        responses=problems(422),
        media_type=CSV,
    )
    async def scorecards_csv(
        self, principal: CurrentPrincipal, month: Month, department: Department = None
    ) -> Response[str]:
        rows = await performance.scorecard(principal, month, department)
        return csv_download(performance.scorecard_csv(rows), f"scorecards-{month}.csv")


class ServiceTeamController(Controller):
    path = "/api/v1/members/{member_id:uuid}/service-team"
    tags = ["reps"]

    @get(
        "/",
        summary="A member's service team",
        guards=[requires("members:read")],
    )
    async def get_team(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> schemas.ServiceTeam:
        return await teams.service_team(member_id, principal)

    @put(
        "/",
        summary="Set a member's service team",
        guards=[requires("reps:assign")],
        responses=problems(422),
    )
    async def set_team(
        self,
        principal: CurrentPrincipal,
        member_id: FromPath[UUID],
        data: JSONBody[schemas.ServiceTeamUpdate],
    ) -> schemas.ServiceTeam:
        """A lead (accountable) and named colleagues for service, settlement and operations;
        all of them see the member. Replaces the team; the change is recorded."""
        return await teams.set_service_team(member_id, data, principal)


class RotationController(Controller):
    path = "/api/v1/rotations"
    tags = ["reps"]
    guards = [requires("reps:assign")]

    @post(
        "/",
        summary="Propose a rotation of a department's books",
        responses=problems(422),
    )
    async def propose(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.RotationCreate]
    ) -> schemas.RotationOut:
        """Each rep's members go to other reps of a suitable level who never served them,
        balanced by member count and value; nothing changes until it is applied."""
        return await rotation.propose(data, principal)

    @get("/{rotation_id:uuid}", summary="Preview a rotation")
    async def preview(
        self, principal: CurrentPrincipal, rotation_id: FromPath[UUID]
    ) -> schemas.RotationOut:
        """Every move, and each rep's member count and value before and after."""
        return await rotation.get_rotation(rotation_id, principal)

    @put(
        "/{rotation_id:uuid}/moves/{member_id:uuid}",
        summary="Give a member to another rep",
        responses=problems(409, 422),
    )
    async def adjust(
        self,
        principal: CurrentPrincipal,
        rotation_id: FromPath[UUID],
        member_id: FromPath[UUID],
        data: JSONBody[schemas.RotationMoveUpdate],
    ) -> schemas.RotationOut:
        return await rotation.adjust(rotation_id, member_id, data, principal)

    @post(
        "/{rotation_id:uuid}/apply",
        status_code=HTTP_200_OK,
        summary="Apply a rotation",
        responses=problems(409),
    )
    async def apply(
        self, principal: CurrentPrincipal, rotation_id: FromPath[UUID]
    ) -> schemas.RotationOut:
        """All moves in one transaction, each with an introduction task for the new rep;
        applying again changes nothing."""
        return await rotation.apply(rotation_id, principal)
