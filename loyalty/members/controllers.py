"""Members API: enrol, look up, update, merge, and the archive's change history."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from litestar import Controller, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from loyalty.auth import CurrentPrincipal, requires
from loyalty.http.openapi import problems
from loyalty.http.params import PageLimit, PageOffset
from loyalty.members import privacy, schemas, service
from loyalty.workflows.enrolment import enrol_member
from loyalty.workflows.merging import merge_members


class MemberController(Controller):
    path = "/api/v1/members"
    tags = ["members"]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Enrol a member",
        responses=problems(409, 422),
        guards=[requires("members:write")],
    )
    async def create_member(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.MemberCreate]
    ) -> schemas.Member:
        """Enrol a person or organisation. Phone (E.164) and email (lower-cased) must be
        unused: a duplicate answers 409 naming the existing member when you may see it."""
        return await enrol_member(data, principal)

    @get(
        "/",
        summary="Look up or search members",
        responses=problems(422),
        guards=[requires("members:read")],
    )
    async def search(
        self,
        principal: CurrentPrincipal,
        phone: Annotated[str | None, QueryParameter(max_length=30)] = None,
        email: Annotated[str | None, QueryParameter(max_length=254)] = None,
        number: Annotated[str | None, QueryParameter(max_length=20)] = None,
        q: Annotated[str | None, QueryParameter(min_length=1, max_length=100)] = None,
        limit: PageLimit = 50,
        offset: PageOffset = 0,
    ) -> schemas.MemberList:
        """Find members by phone, email or member number, or search names with `q`. Only
        members you may see are listed."""
        return await service.search_members(
            principal,
            phone=phone,
            email=email,
            number=number,
            q=q,
            limit=limit,
            offset=offset,
        )

    @get(
        "/{member_id:uuid}",
        summary="Get a member's archive",
        guards=[requires("members:read")],
    )
    async def get_member(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> schemas.Member:
        """The whole archive of a member you may see."""
        member = await service.get_member(member_id, principal)
        from loyalty.reps.contacts import audit_view

        await audit_view(principal, member_id, "archive")
        return member

    @patch(
        "/{member_id:uuid}",
        summary="Update a member's archive",
        responses=problems(409, 422),
        guards=[requires("members:write")],
    )
    async def update_member(
        self,
        principal: CurrentPrincipal,
        member_id: FromPath[UUID],
        data: JSONBody[schemas.MemberUpdate],
    ) -> schemas.Member:
        """Change only the fields sent; every change is recorded with old and new values."""
        return await service.update_member(member_id, data, principal)

    @get(
        "/{member_id:uuid}/changes",
        summary="A member's archive history",
        guards=[requires("members:read")],
    )
    async def changes(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> list[schemas.Change]:
        """Who changed what and when, newest first, including merges."""
        return await service.history(member_id, principal)

    @post(
        "/{member_id:uuid}/merge",
        status_code=HTTP_200_OK,
        summary="Merge a duplicate into this member",
        responses=problems(409, 422),
        guards=[requires("members:merge")],
    )
    async def merge(
        self,
        principal: CurrentPrincipal,
        member_id: FromPath[UUID],
        data: JSONBody[schemas.MergeCreate],
    ) -> schemas.MergeResult:
        """Admins only. The duplicate's points, purchases and ledger history move to this
        member (the survivor); the duplicate is kept, marked merged, and the merge recorded."""
        return await merge_members(member_id, data, principal)


class ClosureRequestController(Controller):
    path = "/api/v1/closure-requests"
    tags = ["privacy"]
    guards = [requires("privacy:erase")]

    @get("/", summary="Members' requests to close their account")
    async def list_requests(
        self,
        principal: CurrentPrincipal,
        status: Annotated[
            Literal["pending", "approved", "rejected"] | None, QueryParameter()
        ] = None,
    ) -> list[schemas.ClosureRequest]:
        return await privacy.closure_requests(principal, status)

    @post(
        "/{request_id:uuid}/approve",
        status_code=HTTP_200_OK,
        summary="Approve: erase the member's personal data",
        responses=problems(409),
    )
    async def approve(
        self, principal: CurrentPrincipal, request_id: FromPath[UUID]
    ) -> schemas.ClosureRequest:
        """Personal fields are removed everywhere (archive, change history values, contact
        log texts, messages); points, ledger, purchases and reports stay, pointing at the
        anonymous member; consent history stays as evidence; the erasure is recorded."""
        return await privacy.decide(request_id, True, principal)

    @post(
        "/{request_id:uuid}/reject",
        status_code=HTTP_200_OK,
        summary="Reject a closure request",
        responses=problems(409),
    )
    async def reject(
        self, principal: CurrentPrincipal, request_id: FromPath[UUID]
    ) -> schemas.ClosureRequest:
        return await privacy.decide(request_id, False, principal)
