"""The API's routes and what each needs, read from the app itself (handlers' guards): the
access-matrix tests and the console's coverage table both start from here."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # Litestar's template, e.g. /api/v1/members/{member_id:uuid}
    access: str  # "public", "member" (member_only), "authenticated" or "permission"
    permissions: tuple[str, ...] = ()

    @property
    def is_read(self) -> bool:
        return self.method in ("GET", "HEAD")

    def fill(self, values: dict[str, str]) -> str:
        def replace(match: re.Match) -> str:
            name = match.group(1)
            return values.get(name) or str(uuid.uuid4())

        return re.sub(r"\{(\w+)(?::\w+)?\}", replace, self.path)


def describe(handler) -> tuple[str, tuple[str, ...]]:
    """Who may call `handler`: its access kind and the permissions its guards require."""
    guards = handler.resolve_guards()
    permissions: tuple[str, ...] = ()
    access = "public"
    for guard in guards:
        name = getattr(guard, "__name__", "")
        if name == "member_only":
            access = "member"
        elif name == "authenticated" and access == "public":
            access = "authenticated"
        for cell in guard.__closure__ or ():
            contents = cell.cell_contents
            if isinstance(contents, tuple) and all(isinstance(p, str) for p in contents):
                permissions += contents
                access = "permission"
    return access, permissions


def api_routes(app) -> list[Route]:
    """Every method of every route under /api/, sorted by path."""
    routes = []
    for route in app.routes:
        if not route.path.startswith("/api/"):
            continue
        for handler in getattr(route, "route_handlers", []):
            access, permissions = describe(handler)
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                routes.append(Route(method, route.path, access, permissions))
    return sorted(set(routes), key=lambda r: (r.path, r.method))


# What a console page declares in its handler's `opt`: the API operations it does for staff
# ("POST /api/v1/rewards", Litestar's path template). An API handler that staff never need a
# page for declares why instead. `tests/console/test_coverage.py` holds every staff operation
# to one of the two and writes the README's table.
COVERS = "covers"
INTEGRATION_ONLY = "integration_only"


def covers(*operations: str) -> dict[str, tuple[str, ...]]:
    """A console handler's `opt`: the staff API operations this page does."""
    return {COVERS: operations}


def integration_only(reason: str) -> dict[str, str]:
    """An API handler's `opt`: no console page, because `reason`."""
    return {INTEGRATION_ONLY: reason}


@dataclass(frozen=True)
class Coverage:
    operation: str  # "METHOD /api/v1/…"
    permissions: tuple[str, ...]
    pages: tuple[str, ...]  # console paths that do it
    integration_only: str | None


def is_staff_operation(route: Route) -> bool:
    """An API operation staff call: not a member's own (/me), not signing in."""
    # "/api/v1/me" itself or below it; "/api/v1/members" is staff's.
    if route.path == "/api/v1/me" or route.path.startswith(("/api/v1/me/", "/api/v1/auth")):
        return False
    return route.access in ("permission", "authenticated")


def console_coverage(app) -> list[Coverage]:
    """Every staff API operation with the console pages that do it, or why none does."""
    pages: dict[str, set[str]] = {}
    reasons: dict[str, str] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            opt = handler.opt or {}
            methods = sorted(handler.http_methods - {"OPTIONS", "HEAD"})
            for operation in opt.get(COVERS, ()):
                pages.setdefault(operation, set()).add(f"{methods[0]} {route.path}")
            if INTEGRATION_ONLY in opt:
                for method in methods:
                    reasons[f"{method} {route.path}"] = opt[INTEGRATION_ONLY]
    rows = []
    for route in api_routes(app):
        if not is_staff_operation(route):
            continue
        operation = f"{route.method} {route.path}"
        rows.append(
            Coverage(
                operation,
                route.permissions,
                tuple(sorted(pages.get(operation, ()))),
                reasons.get(operation),
            )
        )
    return rows
