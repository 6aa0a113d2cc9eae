"""A real local HTTP receiver for webhooks, and running the outbox as the worker does."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loyalty.events.jobs import deliver
from loyalty.infrastructure import db


class Receiver:
    def __init__(self) -> None:
        self.received: list[dict] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                status = 500 if receiver.fail_next > 0 else 204
                receiver.fail_next -= 1
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def deliver_outbox() -> None:
    """What the worker does: every outbox event to its subscribers, then due webhooks."""
    async with db.connection() as conn:
        ids = [row["id"] for row in await conn.fetch("SELECT id FROM outbox_events")]
    for event_id in ids:
        await deliver(event_id)
