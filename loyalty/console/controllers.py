"""Staff console pages: sign-in, dashboard, my members, search, the member page (brief,
archive, contacts, messages, swap requests) and my tasks. Same services as the API; manager
pages are in `team.py`, administration in `admin.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template
from litestar.types import Empty

from loyalty.console import (
    accounts,
    admin,
    front,
    managers,
    member_history,
    movement,
    notices,
    offers,
    service_desk,
    team,
)
from loyalty.console import exports as export_pages
from loyalty.console import jobs as job_pages
from loyalty.console import marketing as marketing_pages
from loyalty.console import merging as merge_pages
from loyalty.console import points as points_pages
from loyalty.console import privacy as privacy_pages
from loyalty.console import redemptions as redemption_pages
from loyalty.console import referrals as referral_pages
from loyalty.console import rewards as reward_pages
from loyalty.console import segments as segment_pages
from loyalty.console import tier_pages as tier_views
from loyalty.console import webhooks as webhook_pages
from loyalty.console.audit import AuditPages
from loyalty.console.common import (
    EXCEPTION_HANDLERS,
    LOGIN_PATH,
    back,
    convert,
    form,
    form_page,
    local_datetime,
    page,
    signed_in,
    staff,
    words,
)
from loyalty.console.expiry_warnings import ExpiryWarningPages
from loyalty.errors import DomainError, InvalidInput, NotAuthenticated, RateLimited
from loyalty.http.middleware import client_address
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.sessions import start_new_session
from loyalty.members import schemas as member_schemas
from loyalty.members import service as members
from loyalty.reps import assignments, contacts, follow_ups, swaps, team_figures, teams
from loyalty.reps import notices as rep_notices
from loyalty.reps import schemas as rep_schemas
from loyalty.reps import settings as rep_settings
from loyalty.settings import Settings
from loyalty.staff import service as staff_service
from loyalty.tiers import service as tier_service
from loyalty.workflows import brief as visit_brief

CONTACT_KINDS = ("visit", "call", "message", "complaint", "request", "note")
CONTACT_CHANNELS = ("visit", "phone", "email", "sms", "wechat", "portal")
MESSAGE_CHANNELS = ("portal", "email", "sms")
SEARCH_FIELDS = ("q", "phone", "email", "number")


@dataclass
class LoginForm:
    username: str = ""
    password: str = ""


def login_page(error: str | None = None, username: str = "", status: int = 200) -> Template:
    return Template(
        "login.html",
        context={"error": error, "username": username, "path": LOGIN_PATH},
        status_code=status,
    )


class SignInPages(Controller):
    path = "/"

    @get("/login")
    async def login_form(self, request: Request) -> Template | Redirect:
        if signed_in(request):
            return Redirect("/console")
        return login_page()

    @post("/login")
    async def login(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: URLEncodedBody[LoginForm],
    ) -> Template | Redirect:
        try:
            found = await staff_service.authenticate(
                data.username[:64],
                data.password[:128],
                client=client_address(request),
                redis=request.app.state.redis,
                settings=settings,
            )
        except RateLimited as exc:
            return login_page(exc.detail, data.username[:64], status=429)
        except NotAuthenticated as exc:
            return login_page(exc.detail, data.username[:64], status=401)
        session_id = await start_new_session(request, {"staff_id": str(found.id)})
        await staff_service.remember_session(
            found.id, session_id, redis=request.app.state.redis, ttl=settings.session_max_age
        )
        return Redirect("/console", status_code=303)

    @post("/logout")
    async def logout(self, request: Request) -> Redirect:
        request.scope["session"] = Empty  # type: ignore[typeddict-item]
        return Redirect(LOGIN_PATH, status_code=303)

    @get("/")
    async def dashboard(self, request: Request) -> Template:
        principal = staff(request)
        tiers = await tier_service.distribution(principal) if principal.can("members:read") else []
        largest = max((count for _, count in tiers), default=0) or 1
        tasks = await follow_ups.my_tasks(principal, 0) if principal.can("members:read") else []
        notices = (await rep_notices.notices(principal))[:5]
        return page(
            request,
            "dashboard.html",
            tiers=tiers,
            largest=largest,
            due_today=len(tasks),
            overdue=sum(1 for task in tasks if task.overdue),
            notices=notices,
            marketing=await marketing_pages.marketing_home(principal),
        )


class MemberPages(Controller):
    path = "/"

    @get("/members")
    async def my_members(self, request: Request) -> Template:
        """The members I serve (a manager: the department's), with reclaim warnings."""
        principal = staff(request, "members:read")
        rows = await team_figures.my_members_overview(principal)
        warning_days = (await rep_settings.get_rep_settings()).warning_days
        return page(request, "members.html", rows=rows, warning_days=warning_days)

    @get("/search", opt=covers("GET /api/v1/members"))
    async def search(
        self,
        request: Request,
        q: Annotated[str, QueryParameter(max_length=200)] = "",
        by: Annotated[str, QueryParameter(max_length=10)] = "q",
    ) -> Template:
        principal = staff(request, "members:read")
        by = by if by in SEARCH_FIELDS else "q"
        results = None
        error = None
        if q.strip():
            try:
                results = await members.search_members(principal, **{by: q.strip()}, limit=50)
            except InvalidInput as exc:
                error = exc.detail
        return page(
            request, "search.html", q=q, by=by, results=results, error=error, fields=SEARCH_FIELDS
        )

    @get(
        "/members/{member_id:uuid}",
        opt=covers(
            "GET /api/v1/members/{member_id:uuid}",
            "GET /api/v1/members/{member_id:uuid}/brief",
            "GET /api/v1/members/{member_id:uuid}/contacts",
            "GET /api/v1/members/{member_id:uuid}/assignments",
            "GET /api/v1/members/{member_id:uuid}/lifecycle",
            "GET /api/v1/members/{member_id:uuid}/service-team",
            "GET /api/v1/members/{member_id:uuid}/tier",
            "GET /api/v1/members/{member_id:uuid}/points",
            "GET /api/v1/members/{member_id:uuid}/referrals",
            "GET /api/v1/members/{member_id:uuid}/rewards",
        ),
    )
    async def member(self, request: Request, member_id: FromPath[UUID]) -> Template:
        return await member_page(request, member_id)

    @post(
        "/members/{member_id:uuid}/contacts",
        opt=covers("POST /api/v1/members/{member_id:uuid}/contacts"),
    )
    async def log_contact(self, request: Request, member_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "contacts:write")
        values = await form(request)
        try:
            values["occurred_at"] = local_datetime(values.get("occurred_at", ""), "occurred_at")
            if values["occurred_at"] is None:
                values.pop("occurred_at")
            data = convert(values, rep_schemas.ContactCreate)
            await contacts.add_contact(member_id, data, principal)
        except (InvalidInput, DomainError) as exc:
            return await member_page(request, member_id, error=exc, form=values)
        return back(f"/console/members/{member_id}?saved=contact#contacts")

    @post(
        "/members/{member_id:uuid}/messages",
        opt=covers("POST /api/v1/members/{member_id:uuid}/messages"),
    )
    async def message(self, request: Request, member_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "contacts:write")
        values = await form(request)
        try:
            data = convert(values, rep_schemas.MessageCreate)
            await contacts.send_message(member_id, data, principal)
        except DomainError as exc:
            return await member_page(request, member_id, error=exc, form=values)
        return back(f"/console/members/{member_id}?saved=message#contacts")

    @post("/members/{member_id:uuid}/archive", opt=covers("PATCH /api/v1/members/{member_id:uuid}"))
    async def archive(self, request: Request, member_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "members:write")
        values = await form(request)
        try:
            current = await members.get_member(member_id, principal)
            address = current.address or member_schemas.Address()
            household = current.household or member_schemas.Household()
            update = {
                "name": values.get("name", "").strip() or current.name,
                "phone": values.get("phone", "").strip() or None,
                "email": values.get("email", "").strip() or None,
                "address": {
                    **_plain(address),
                    "line1": values.get("line1", "").strip(),
                    "city": values.get("city", "").strip(),
                },
                "household": {**_plain(household), "spouse": values.get("spouse", "").strip()},
                "hobbies": words(values.get("hobbies", "")),
                "consumption_preferences": words(values.get("consumption_preferences", "")),
                "notes": values.get("notes", ""),
            }
            await members.update_member(
                member_id, convert(update, member_schemas.MemberUpdate), principal
            )
        except DomainError as exc:
            return await member_page(request, member_id, error=exc, form=values)
        return back(f"/console/members/{member_id}?saved=archive#archive")

    @post("/members/{member_id:uuid}/swap", opt=covers("POST /api/v1/swaps"))
    async def swap(self, request: Request, member_id: FromPath[UUID]) -> Template | Redirect:
        """A rep asks to swap this member with another rep's member (given by number)."""
        principal = staff(request, "members:read")
        values = await form(request)
        try:
            await members.get_member(member_id, principal)
            number = str(values.get("other_number", "")).strip()
            if not number:
                raise InvalidInput("give the other member's number", field="other_number")
            other = await members.resolve_member_id(number=number)
            data = convert(
                {"member_a": member_id, "member_b": other, "reason": values.get("reason", "")},
                rep_schemas.SwapCreate,
            )
            await swaps.request_swap(data, principal)
        except DomainError as exc:
            return await member_page(request, member_id, error=exc, form=values)
        return back(f"/console/members/{member_id}?saved=swap")

    @post(
        "/members/{member_id:uuid}/service-team",
        opt=covers("PUT /api/v1/members/{member_id:uuid}/service-team"),
    )
    async def service_team(
        self, request: Request, member_id: FromPath[UUID]
    ) -> Template | Redirect:
        """A manager names the member's service team: the lead and colleagues with roles."""
        principal = staff(request, "members:read")
        try:
            data = await accounts.service_team_input(request)
            await teams.set_service_team(member_id, data, principal)
        except DomainError as exc:
            return await member_page(request, member_id, error=exc)
        return back(f"/console/members/{member_id}?saved=team#service-team")

    @get("/tasks", opt=covers("GET /api/v1/tasks"))
    async def tasks(
        self, request: Request, days: Annotated[int, QueryParameter(ge=0, le=90)] = 7
    ) -> Template:
        principal = staff(request, "members:read")
        found = await follow_ups.my_tasks(principal, days)
        from loyalty.infrastructure.clock import local_today

        today = local_today()
        return page(
            request,
            "tasks.html",
            days=days,
            overdue=[t for t in found if t.due_on < today],
            today=[t for t in found if t.due_on == today],
            later=[t for t in found if t.due_on > today],
        )


def _plain(value) -> dict:
    import msgspec

    return msgspec.to_builtins(value)


SAVED = {
    "contact": N_("The contact is logged."),
    "message": N_("The message is sent and logged."),
    "archive": N_("The archive is saved."),
    "swap": N_("Your swap request is with your manager."),
    "team": N_("The service team is saved."),
    "registered": N_("The customer is registered."),
}


async def member_page(
    request: Request,
    member_id: UUID,
    error: DomainError | None = None,
    form: dict | None = None,
) -> Template:
    """The member page: the brief (audited), the contact log and the forms."""
    principal = staff(request, "members:read")
    brief = await visit_brief.brief(member_id, principal)
    log = await contacts.member_contacts(member_id, principal, limit=30)
    periods = await assignments.history(member_id, principal)
    return form_page(
        request,
        "member.html",
        SAVED,
        error,
        b=brief,
        m=brief.member,
        log=log,
        periods=periods,
        form=form or {},
        contact_kinds=CONTACT_KINDS,
        contact_channels=CONTACT_CHANNELS,
        message_channels=MESSAGE_CHANNELS,
        number=members.format_number,
        team_roles=accounts.TEAM_ROLES,
        team_rows=range(accounts.TEAM_ROWS),
        **await accounts.member_accounts(member_id, principal),
    )


ConsoleController = Router(
    path="/console",
    route_handlers=[
        SignInPages,
        MemberPages,
        team.TeamPages,
        accounts.AccountPages,
        movement.MovementPages,
        admin.AdminPages,
        notices.NoticePages,
        service_desk.ServiceDeskPages,
        managers.ManagerPages,
        reward_pages.RewardPages,
        redemption_pages.RedemptionPages,
        referral_pages.ReferralPages,
        points_pages.PointsPages,
        front.FrontPages,
        member_history.MemberHistoryPages,
        job_pages.JobPages,
        tier_views.SimulationPages,
        tier_views.OverridePages,
        merge_pages.MergePages,
        export_pages.ExportPages,
        privacy_pages.PrivacyPages,
        webhook_pages.WebhookPages,
        ExpiryWarningPages,
        offers.OfferPages,
        AuditPages,
        segment_pages.SegmentPages,
        marketing_pages.MarketingPages,
    ],
    before_request=notices.count_unread,
    include_in_schema=False,
    exception_handlers=EXCEPTION_HANDLERS,
)
