"""The console's routes and the permission each handler asks for, read from the app itself:
the console access matrix (tests/console/test_console_access.py) starts from here, so pages
added later are covered without a list to keep.

A handler's permission is what it passes to `staff(request, "...")`, in its own body or in a
method of its class or function of its module that it calls (followed to any depth): a string,
or a module constant naming one (`staff(request, PERMISSION)`). A handler may instead declare
it in its `opt`: `@get("/x", opt={"permission": "..."})` (or `None`: any signed-in staff)."""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

# Console pages anyone may open (the sign-in page), and signing out.
PUBLIC = frozenset({"GET /console/login", "POST /console/login", "POST /console/logout"})
ANY_STAFF = "any staff"  # a handler that calls staff(request) without a permission
UNKNOWN = "unknown"


@dataclass(frozen=True)
class ConsoleRoute:
    method: str
    path: str  # Litestar's template, e.g. /console/members/{member_id:uuid}
    handler: str  # module.Class.function, for messages
    permissions: frozenset[str] | str  # the permissions found, or ANY_STAFF / UNKNOWN / "public"

    @property
    def operation(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def has_member(self) -> bool:
        return "{member_id" in self.path


def _function_node(fn: Any) -> ast.AST | None:
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    return ast.parse(source).body[0]


def _value(node: ast.AST, scope: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return scope.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _value(node.value, scope)
        return getattr(owner, node.attr, None) if owner is not None else None
    return None


def permissions_of(fn: Any, owner: type | None = None, seen: set | None = None) -> set[str | None]:
    """The permissions `fn` (and what it calls in its class and module) passes to `staff()`;
    None in the set for a call without one."""
    seen = seen if seen is not None else set()
    fn = inspect.unwrap(fn)
    if fn in seen:
        return set()
    seen.add(fn)
    node = _function_node(fn)
    if node is None:
        return set()
    scope = getattr(fn, "__globals__", {})
    found: set[str | None] = set()
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        target = call.func
        if isinstance(target, ast.Name) and target.id == "staff":
            found.add(_value(call.args[1], scope) if len(call.args) > 1 else None)
            continue
        callee = None
        if (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
            and owner is not None
        ):
            callee = getattr(owner, target.attr, None)
        elif isinstance(target, ast.Name):
            callee = scope.get(target.id)
            # Only functions of the console's own modules: not the services they call.
            if not (
                inspect.isfunction(callee) and callee.__module__ == getattr(fn, "__module__", "")
            ):
                callee = None
        if callee is not None and inspect.isfunction(inspect.unwrap(callee)):
            found |= permissions_of(callee, owner, seen)
    return found


def console_routes(app) -> list[ConsoleRoute]:
    """Every method of every route under /console, with the permissions its handler needs."""
    routes = []
    for route in app.routes:
        if not route.path.startswith("/console"):
            continue
        for handler in getattr(route, "route_handlers", []):
            methods = sorted(handler.http_methods - {"OPTIONS", "HEAD"})
            fn = handler.fn
            # The class the handler was written in (its owner at run time may be a router).
            class_name = fn.__qualname__.rpartition(".")[0]
            owner_class = (
                getattr(sys.modules[fn.__module__], class_name, None) if class_name else None
            )
            name = f"{fn.__module__}.{fn.__qualname__}"
            for method in methods:
                operation = f"{method} {route.path}"
                if operation in PUBLIC:
                    permissions: frozenset[str] | str = "public"
                elif "permission" in (handler.opt or {}):
                    declared = handler.opt["permission"]
                    permissions = frozenset({declared}) if declared else ANY_STAFF
                else:
                    found = permissions_of(fn, owner_class)
                    named = frozenset(p for p in found if isinstance(p, str))
                    permissions = named or (ANY_STAFF if None in found else UNKNOWN)
                routes.append(ConsoleRoute(method, route.path, name, permissions))
    return sorted(routes, key=lambda r: (r.path, r.method))
