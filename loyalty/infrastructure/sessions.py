"""Server-side staff sessions in Redis, with a fresh session id at every sign-in."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from litestar.connection import ASGIConnection
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.types import Empty, Message, ScopeSession

_NEW_SESSION_ID = "loyalty.new_session_id"
SESSION_COOKIE = "loyalty_session"


class RotatingSessionBackend(ServerSideSessionBackend):
    def get_session_id(self, connection: ASGIConnection) -> str:
        return connection.scope.get(_NEW_SESSION_ID) or super().get_session_id(connection)  # type: ignore[return-value]

    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection
    ) -> None:
        # Anonymous visitors get no session (and no Redis entry) until they sign in.
        if scope_session is not Empty and not scope_session:
            if not connection.cookies.get(self.config.key):
                return
            scope_session = Empty
        await super().store_in_message(scope_session, message, connection)


@dataclass
class RotatingSessionConfig(ServerSideSessionConfig):
    _backend_class = RotatingSessionBackend  # type: ignore[assignment]


async def start_new_session(connection: ASGIConnection, data: dict) -> str:
    """Replace any session the browser brought (no fixation) and return the new id."""
    store = connection.app.stores.get("sessions")
    if old_id := connection.cookies.get(SESSION_COOKIE):
        await store.delete(old_id)
    new_id = secrets.token_hex(32)
    connection.scope[_NEW_SESSION_ID] = new_id  # type: ignore[literal-required]
    connection.scope["session"] = data
    return new_id
