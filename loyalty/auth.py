"""Who is calling, and what they may do: principals, the permission catalogue, guards.

Every endpoint declares the permission it needs with `requires(...)`, and services ask
`principal.can(...)` with the same names: this catalogue is the one authorisation vocabulary.
Staff get permissions from their role; integration API keys from their scopes. Which members
a caller may see is not a permission: `loyalty.members.visibility` defines it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeAlias
from uuid import UUID

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from loyalty.errors import NotAuthenticated, PermissionDenied

ROLES = ("admin", "general_manager", "manager", "rep", "service", "marketing")

PERMISSIONS: dict[str, str] = {
    "staff:read": "list staff users",
    "staff:manage": "create, change and deactivate staff users",
    "api_keys:manage": "create and revoke integration API keys",
    "members:read": "look up members and their status",
    "members:write": "enrol members and change archives",
    "members:merge": "merge a duplicate member into a survivor",
    "purchases:write": "post purchases and returns",
    "points:adjust": "make manual points adjustments",
    "rules:manage": "change earning rules",
    "tiers:manage": "change the tier ladder and simulate changes",
    "tiers:override": "set or end a member's tier override",
    "referrals:review": "review held referrals: approve or reject them",
    "referrals:report": "read the referral programme's statistics",
    "referrals:manage": "change what referrals pay and the monthly cap",
    "rewards:manage": "manage the rewards catalog and voucher pools",
    "redemptions:write": "redeem rewards for members and cancel redemptions",
    "redemptions:fulfil": "mark redemptions fulfilled",
    "reps:assign": (
        "hand out pool members, reassign, take back, handle handovers and swaps, name service"
        " teams, read the team's scorecards and reassignment flags"
    ),
    "departments:all": "do a manager's work in every department, not only one's own",
    "reps:configure": "change the ownership rules",
    "contacts:write": "log contacts with members and message them",
    "audit:read": "see who opened a member's archive",
    "audit:trail": "read the audit trail of every staff change",
    "service:desk": "answer members' requests at the service desk and find any member there",
    "jobs:run": "see the background jobs and their runs, and run one now",
    "webhooks:manage": "manage webhook subscribers and resend deliveries",
    "privacy:erase": "decide closure requests and erase members' personal data",
    "exports:read": "export the ledger and read the points liability report",
    "segments:manage": "build and count member segments and see their value groups",
    "offers:manage": "write offers and send approved ones",
    "offers:approve": "approve offers for sending (managers of marketing, admins)",
    "marketing:report": "read offer results and the monthly movement report",
    "imports:run": "import members and purchases from files and read the import reports",
}

# What a manager may do in their department. A general manager may do the same in every
# department, and export and import besides.
_MANAGER_PERMISSIONS = frozenset(
    {
        "staff:read",
        "members:read",
        "members:write",
        "points:adjust",
        "tiers:override",
        "referrals:review",
        "referrals:report",
        "redemptions:write",
        "redemptions:fulfil",
        "reps:assign",
        "contacts:write",
        "audit:read",
        "service:desk",
    }
)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(PERMISSIONS),
    "general_manager": _MANAGER_PERMISSIONS
    | {"departments:all", "exports:read", "imports:run", "audit:trail"},
    "manager": _MANAGER_PERMISSIONS,
    "rep": frozenset({"members:read", "members:write", "redemptions:write", "contacts:write"}),
    "service": frozenset(
        {
            "members:read",
            "members:write",
            "referrals:review",
            "redemptions:write",
            "redemptions:fulfil",
            "contacts:write",
            "service:desk",
        }
    ),
    # Marketing reaches members through segments, not archives.
    "marketing": frozenset(
        {
            "referrals:report",
            "rewards:manage",
            "segments:manage",
            "offers:manage",
            "marketing:report",
        }
    ),
}
# A manager of the marketing department also approves offers.
MARKETING_MANAGER_PERMISSIONS = ROLE_PERMISSIONS["marketing"] | {"offers:approve"}

# Keys are for machines: they may never administer people or mint other keys.
API_KEY_SCOPES = frozenset(
    {"members:read", "members:write", "purchases:write", "staff:read", "redemptions:write"}
)


@dataclass(frozen=True)
class Principal:
    kind: str  # "staff", "api_key", "member" (portal) or "portal" (self sign-up)
    id: UUID
    label: str
    role: str | None = None
    department: str | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def department_limit(self) -> str | None:
        """The one department a manager's work is limited to; None for those who work on
        every department and for those who manage no reps (their own limits apply)."""
        if self.can("reps:assign") and not self.can("departments:all"):
            return self.department
        return None


# A manager without a department manages nobody: "" matches no department, where None
# would read as "every department" in the queries that scope a manager.
NO_DEPARTMENT = ""


def staff_principal(staff_id: UUID, username: str, role: str, department: str | None) -> Principal:
    if role == "manager" and not department:
        department = NO_DEPARTMENT
    return Principal(
        kind="staff",
        id=staff_id,
        label=f"staff:{username}",
        role=role,
        department=department,
        permissions=ROLE_PERMISSIONS.get(role, frozenset())
        | (
            MARKETING_MANAGER_PERMISSIONS
            if role == "manager" and department == "marketing"
            else frozenset()
        ),
    )


def member_principal(member_id: UUID, number: str) -> Principal:
    """A member signed in to the portal: no staff permissions, only their own data."""
    return Principal(kind="member", id=member_id, label=f"member:{number}", role="member")


# Self sign-up through the portal acts as this principal until the member exists.
PORTAL = Principal(kind="portal", id=UUID(int=0), label="portal", role=None)


def current_principal(connection: ASGIConnection) -> Principal:
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise NotAuthenticated(
            connection.scope.get("auth_error")  # type: ignore[arg-type]
            or "sign in, or send an Authorization: Bearer token or API key"
        )
    return principal


def provide_principal(request: Request) -> Principal:
    """The app-wide `principal` dependency: the caller, for handlers that act for them."""
    return current_principal(request)


# A handler parameter `principal: CurrentPrincipal` receives the caller (injected by name:
# the parameter is called `principal`). Guards have already refused anonymous callers.
CurrentPrincipal: TypeAlias = NamedDependency[Principal]


def requires(*permissions: str) -> Callable[[ASGIConnection, BaseRouteHandler], Awaitable[None]]:
    """A guard: the caller must be authenticated and hold every one of `permissions`."""
    unknown = set(permissions) - set(PERMISSIONS)
    if unknown:
        raise ValueError(f"unknown permissions {sorted(unknown)}")

    # async on purpose: Litestar runs a plain function guard in a thread pool.
    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        principal = current_principal(connection)
        missing = [p for p in permissions if not principal.can(p)]
        if missing:
            raise PermissionDenied(f"this needs the {', '.join(missing)} permission")

    return guard


async def member_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A guard for the member's own API (`/api/v1/me`): a signed-in member token."""
    if current_principal(connection).kind != "member":
        raise PermissionDenied("this is the member's own API: sign in as a member")


async def authenticated(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A guard for endpoints any signed-in caller may use."""
    current_principal(connection)
