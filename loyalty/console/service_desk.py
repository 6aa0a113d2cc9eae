"""Service desk pages (customer service, managers): find any member the caller may reach by
phone, member number or name; the members' requests and complaints with their response
clock; answer one with a reply through the company's channels, or log its resolution. The
rules are in `loyalty.reps.service_desk`; replies go through `contacts.send_message`."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from loyalty.console.common import back, convert, form, form_page, staff
from loyalty.errors import DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.clock import now
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.i18n import gettext as _
from loyalty.members import service as members
from loyalty.reps import contacts, service_desk
from loyalty.reps import schemas as rep_schemas

MESSAGE_CHANNELS = ("portal", "email", "sms")
SAVED = {
    "replied": N_("The reply is sent and logged on the member; the request is answered."),
    "resolved": N_("The resolution is logged; the request is resolved."),
}


def clock(found: rep_schemas.ServiceRequest) -> str:
    """What is left of an open request's response time (a part hour counts as one), or how
    many whole hours past it (at least one)."""
    if found.answered_at is not None:
        return ""
    seconds = (found.due_at - now()).total_seconds()
    if seconds >= 0:
        return _("%(hours)s h left") % {"hours": int(-(-seconds // 3600))}
    return _("%(hours)s h overdue") % {"hours": max(1, int(-seconds // 3600))}


class ServiceDeskPages(Controller):
    path = "/"

    @get("/service", opt=covers("GET /api/v1/members"))
    async def desk(
        self, request: Request, q: Annotated[str, QueryParameter(max_length=200)] = ""
    ) -> Template:
        principal = staff(request, "service:desk")
        results, error = None, None
        if q.strip():
            try:
                results = await service_desk.find_members(principal, q)
            except InvalidInput as exc:
                error = exc
        return form_page(
            request,
            "service_desk.html",
            {},
            error,
            q=q,
            results=results,
            counts=await service_desk.counts(principal),
            soonest=(await service_desk.list_requests(principal, "open"))[:5],
            clock=clock,
            number=members.format_number,
        )

    @get("/service/requests")
    async def requests(
        self, request: Request, status: Annotated[str, QueryParameter(max_length=10)] = "open"
    ) -> Template:
        principal = staff(request, "service:desk")
        status = status if status in service_desk.STATUSES else "open"
        return form_page(
            request,
            "service_requests.html",
            SAVED,
            status_shown=status,
            statuses=service_desk.STATUSES,
            rows=await service_desk.list_requests(principal, status),
            number=members.format_number,
            clock=clock,
        )

    async def _request_page(
        self,
        request: Request,
        request_id: UUID,
        error: DomainError | None = None,
        values: dict | None = None,
    ) -> Template:
        principal = staff(request, "service:desk")
        found = await service_desk.get_request(request_id, principal)
        member = await members.get_member(found.member_id, principal)
        consented = {c.channel for c in member.contact_preferences.consents if c.granted}
        return form_page(
            request,
            "service_request.html",
            SAVED,
            error,
            r=found,
            m=member,
            log=await contacts.member_contacts(found.member_id, principal, limit=10),
            channels=MESSAGE_CHANNELS,
            consented=consented,
            form=values or {},
            number=members.format_number,
            clock=clock,
        )

    @get("/service/requests/{request_id:uuid}")
    async def one_request(self, request: Request, request_id: FromPath[UUID]) -> Template:
        return await self._request_page(request, request_id)

    @post(
        "/service/requests/{request_id:uuid}/reply",
        opt=covers("POST /api/v1/members/{member_id:uuid}/messages"),
    )
    async def reply(self, request: Request, request_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "contacts:write")
        values = await form(request)
        try:
            data = convert(
                {
                    "channel": values.get("channel", ""),
                    "subject": str(values.get("subject", "")).strip(),
                    "body": str(values.get("body", "")).strip(),
                },
                rep_schemas.MessageCreate,
            )
            await service_desk.reply(request_id, data, principal)
        except DomainError as exc:
            return await self._request_page(request, request_id, exc, values)
        return back(f"/console/service/requests/{request_id}?saved=replied")

    @post(
        "/service/requests/{request_id:uuid}/resolve",
        opt=covers("POST /api/v1/members/{member_id:uuid}/contacts"),
    )
    async def resolve(self, request: Request, request_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "contacts:write")
        values = await form(request)
        try:
            data = convert(
                {"outcome": str(values.get("outcome", "")).strip()}, rep_schemas.ResolutionCreate
            )
            await service_desk.resolve(request_id, data, principal)
        except DomainError as exc:
            return await self._request_page(request, request_id, exc, values)
        return back(f"/console/service/requests/{request_id}?saved=resolved")
