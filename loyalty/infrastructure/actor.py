"""Who is acting, for the audit trail: set once where a request's caller is resolved, read by
`loyalty.audit.service.record`, so services need no extra argument to say who changed what.
Outside a request (jobs, the CLI) the actor is the system."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from uuid import UUID

from loyalty.auth import Principal


@dataclass(frozen=True)
class Actor:
    kind: str  # "staff", "api_key", "system" (or "member"/"portal" for the portal's own acts)
    id: UUID | None
    label: str


SYSTEM = Actor("system", None, "system")


@dataclass
class Acting:
    """One request's (or job's) actor, and whether a service recorded a change in it: the
    audit middleware then adds no generic record of its own. Mutable on purpose: a handler
    may run in a copied context, and the middleware must still see `recorded`."""

    actor: Actor
    request_id: str | None = None
    recorded: bool = False


_current: ContextVar[Acting | None] = ContextVar("audit_actor", default=None)


def actor_of(principal: Principal) -> Actor:
    return Actor(principal.kind, principal.id, principal.label)


def begin(actor: Actor, request_id: str | None = None) -> tuple[Acting, Token]:
    """Act as `actor` until `end(token)`."""
    acting = Acting(actor, request_id)
    return acting, _current.set(acting)


def end(token: Token) -> None:
    _current.reset(token)


def current() -> Acting:
    """The acting context; the system when nothing set one."""
    return _current.get() or Acting(SYSTEM)


def note_recorded() -> None:
    acting = _current.get()
    if acting is not None:
        acting.recorded = True
