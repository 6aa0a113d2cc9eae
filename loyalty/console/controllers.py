"""Staff console pages: sign-in, sign-out, dashboard and staff list. Same services as the API."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, URLEncodedBody
from litestar.response import Redirect, Template
from litestar.types import Empty
from msgspec import UNSET

from loyalty.auth import Principal
from loyalty.errors import DomainError, NotAuthenticated, RateLimited
from loyalty.sessions import start_new_session
from loyalty.settings import Settings
from loyalty.staff import schemas as staff_schemas
from loyalty.staff import service as staff_service
from loyalty.staff.controllers import client_address
from loyalty.tiers import service as tier_service

LOGIN_PATH = "/console/login"


@dataclass
class LoginForm:
    username: str = ""
    password: str = ""


def signed_in(request: Request) -> Principal | None:
    principal = request.scope.get("user")
    return principal if isinstance(principal, Principal) and principal.is_staff else None


def login_page(error: str | None = None, username: str = "", status: int = 200) -> Template:
    return Template(
        "login.html",
        context={"error": error, "username": username},
        status_code=status,
    )


class ConsoleController(Controller):
    path = "/console"
    include_in_schema = False

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
            staff = await staff_service.authenticate(
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
        session_id = await start_new_session(request, {"staff_id": str(staff.id)})
        await staff_service.remember_session(
            staff.id, session_id, redis=request.app.state.redis, ttl=settings.session_max_age
        )
        return Redirect("/console", status_code=303)

    @post("/logout")
    async def logout(self, request: Request) -> Redirect:
        request.scope["session"] = Empty  # type: ignore[typeddict-item]
        return Redirect(LOGIN_PATH, status_code=303)

    @get("/")
    async def dashboard(self, request: Request) -> Template | Redirect:
        principal = signed_in(request)
        if principal is None:
            return Redirect(LOGIN_PATH)
        tiers = await tier_service.distribution() if principal.can("members:read") else []
        largest = max((count for _, count in tiers), default=0) or 1
        return Template(
            "dashboard.html", context={"me": principal, "tiers": tiers, "largest": largest}
        )

    @get("/staff")
    async def staff_list(self, request: Request) -> Template | Redirect:
        principal = signed_in(request)
        if principal is None:
            return Redirect(LOGIN_PATH)
        if not principal.can("staff:read"):
            return Template(
                "dashboard.html",
                context={"me": principal, "error": "Your role cannot see the staff list."},
                status_code=403,
            )
        department = principal.department if principal.role == "manager" else None
        staff = await staff_service.list_staff(department=department)
        return Template("staff.html", context={"me": principal, "staff": staff})

    @post("/staff/{staff_id:uuid}/deactivate")
    async def deactivate(self, request: Request, staff_id: FromPath[UUID]) -> Template | Redirect:
        principal = signed_in(request)
        if principal is None:
            return Redirect(LOGIN_PATH, status_code=303)
        if not principal.can("staff:manage"):
            return Template(
                "dashboard.html",
                context={"me": principal, "error": "Only administrators can deactivate staff."},
                status_code=403,
            )
        try:
            await staff_service.update_staff(
                staff_id,
                staff_schemas.StaffUpdate(active=False, display_name=UNSET),
                actor=principal,
                redis=request.app.state.redis,
                session_store=request.app.stores.get("sessions"),
            )
        except DomainError as exc:
            staff = await staff_service.list_staff()
            return Template(
                "staff.html",
                context={"me": principal, "staff": staff, "error": exc.detail},
                status_code=exc.status_code,
            )
        return Redirect("/console/staff", status_code=303)
