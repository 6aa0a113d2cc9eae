"""The API's routes and what each needs, read from the app itself (handlers' guards), so a
new endpoint is covered by the reliability suites without editing them."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

# Endpoints anyone may call: sign-in and sign-up.
PUBLIC = {
    ("POST", "/api/v1/auth/tokens"),
    ("POST", "/api/v1/me/sign-in"),
    ("POST", "/api/v1/me/sign-in/code"),
    ("POST", "/api/v1/me/sign-in/password"),
    ("POST", "/api/v1/me/sign-up"),
    ("POST", "/api/v1/me/sign-up/confirm"),
}


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


def _describe(handler) -> tuple[str, tuple[str, ...]]:
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
    routes = []
    for route in app.routes:
        if not route.path.startswith("/api/"):
            continue
        for handler in getattr(route, "route_handlers", []):
            access, permissions = _describe(handler)
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                routes.append(Route(method, route.path, access, permissions))
    return sorted(set(routes), key=lambda r: (r.path, r.method))
