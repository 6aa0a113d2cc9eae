"""How `loyalty serve` runs uvicorn, with limits that keep slow, idle or oversized clients
from tying the server up.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) and, with
`limit_concurrency`, answers 503 at once past a number of connections, but it has no limit on
how long a client may take to send a request: a connection that trickles its headers or body
(slowloris) is kept for ever. `GuardedHttpToolsProtocol` adds those limits, modelled on
Apache's mod_reqtimeout:

- the request line and headers must arrive within `LOYALTY_WEB_HEADER_TIMEOUT` seconds of
  the connection opening or of the request's first byte, and be at most 64 KiB (else 431);
- the body must arrive within `LOYALTY_WEB_BODY_TIMEOUT` seconds, extended by one second for
  every 500 bytes received (a minimum rate, so large uploads at a reasonable speed are fine),
  not counting time when the app itself has stopped reading;
- a request that runs out of time gets 408 and its connection is closed (a connection that
  never sent a byte is just closed); after a 408 or 431 the server stops sending and
  discards what still arrives for `LINGER` seconds before closing, so the client reads the
  answer (closing at once with unread input resets the connection, which can destroy the
  answer before the client has read it);
- a client that stops reading its response (the server's write buffer stays above its high
  mark, 64 KiB, for `LOYALTY_WEB_SEND_TIMEOUT` seconds) has its connection dropped, which also
  ends the handler waiting to write to it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from loyalty.settings import Settings, get_settings

MAX_HEAD_BYTES = 64 * 1024  # request line and headers
BODY_MIN_RATE = 500  # bytes per second: each 500 bytes received earns another second
BODY_TICK = 1.0  # seconds between checks of a body's progress
LINGER = 2.0  # seconds to discard input after an error answer before closing


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn.run() arguments for these limits."""
    return {
        "http": "loyalty.infrastructure.serving:GuardedHttpToolsProtocol",
        "timeout_keep_alive": settings.web_keep_alive,
        # Past this many open connections, requests get 503 at once instead of queueing.
        "limit_concurrency": settings.web_max_connections,
    }


def _response(status: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus time and size limits on reading a request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = float(settings.web_header_timeout)
        self.body_timeout = float(settings.web_body_timeout)
        self.send_timeout = float(settings.web_send_timeout)
        self._send_timer: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reading_head = False
        self._head_bytes = 0
        self._head_started = False  # a byte of the current request has arrived
        self._body_bytes = 0
        self._body_waited = 0.0  # seconds spent waiting for the body while the app read it
        self._body_checked = 0.0
        self._lingering = False

    # --- timers ------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cut_off(self, status: bytes | None) -> None:
        self._disarm()
        if self.transport.is_closing() or self._lingering:
            return
        if status is not None and (self.cycle is None or not self.cycle.response_started):
            self.transport.write(_response(status))
            if self.transport.can_write_eof():
                self._lingering = True
                self.transport.write_eof()
                self._arm(LINGER, self.transport.close)
                return
        self.transport.close()

    def _expect_head(self) -> None:
        self._reading_head = True
        self._head_bytes = 0
        self._arm(self.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._timer = None
        self._cut_off(b"408 Request Timeout" if self._head_started else None)

    def _check_body(self) -> None:
        self._timer = None
        now = self.loop.time()
        if not self.flow.read_paused:  # time the app spends not reading is not the client's
            self._body_waited += now - self._body_checked
        self._body_checked = now
        allowed = self.body_timeout + self._body_bytes / BODY_MIN_RATE
        if self._body_waited >= allowed:
            self._cut_off(b"408 Request Timeout")
            return
        self._timer = self.loop.call_later(
            min(BODY_TICK, allowed - self._body_waited), self._check_body
        )

    # --- protocol events -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_started = False
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.send_timeout, self._send_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_stalled(self) -> None:
        self._send_timer = None
        # abort, not close: close would wait for the buffer to be read, which it never is.
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the answer is sent; what still arrives is discarded
        was_reading_head = self._reading_head
        super().data_received(data)
        if was_reading_head and self._reading_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._cut_off(b"431 Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        if not self._reading_head:  # a later request on a kept-alive connection
            self._expect_head()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._body_bytes = 0
        self._body_waited = 0.0
        self._body_checked = self.loop.time()
        self._arm(min(BODY_TICK, self.body_timeout), self._check_body)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._head_started = False
        super().on_message_complete()
