"""Closure requests (admins): members' requests to close their account, approved (the
member's personal data is erased, after ticking a confirmation) or rejected. Same service
as the API (`loyalty.members.privacy`)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from loyalty.console.common import back, form, form_page, staff
from loyalty.errors import DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.members import privacy

SAVED = {
    "approved": N_("The request is approved: the member's personal data is erased."),
    "rejected": N_("The request is rejected."),
}
STATUSES = ("pending", "approved", "rejected", "all")


class PrivacyPages(Controller):
    path = "/privacy"

    async def _list(
        self, request: Request, status: str = "pending", error: DomainError | None = None
    ) -> Template:
        principal = staff(request, "privacy:erase")
        status = status if status in STATUSES else "pending"
        requests = await privacy.closure_requests(principal, None if status == "all" else status)
        return form_page(
            request,
            "privacy.html",
            SAVED,
            error,
            requests=list(reversed(requests)) if status != "pending" else requests,
            shown=status,
            statuses=STATUSES,
        )

    @get("/", opt=covers("GET /api/v1/closure-requests"))
    async def list_page(
        self, request: Request, status: Annotated[str, QueryParameter(max_length=10)] = "pending"
    ) -> Template:
        return await self._list(request, status)

    @post(
        "/{request_id:uuid}/approve",
        opt=covers("POST /api/v1/closure-requests/{request_id:uuid}/approve"),
    )
    async def approve(self, request: Request, request_id: FromPath[UUID]) -> Template | Redirect:
        """Erase the member, once the admin ticked that they understand it cannot be undone."""
        principal = staff(request, "privacy:erase")
        values = await form(request)
        try:
            if values.get("confirm") != "yes":
                raise InvalidInput(
                    N_("tick the box to confirm the erasure"), field=f"confirm-{request_id}"
                )
            await privacy.decide(request_id, True, principal)
        except DomainError as exc:
            return await self._list(request, error=exc)
        return back("/console/privacy?saved=approved")

    @post(
        "/{request_id:uuid}/reject",
        opt=covers("POST /api/v1/closure-requests/{request_id:uuid}/reject"),
    )
    async def reject(self, request: Request, request_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "privacy:erase")
        try:
            await privacy.decide(request_id, False, principal)
        except DomainError as exc:
            return await self._list(request, error=exc)
        return back("/console/privacy?saved=rejected")
