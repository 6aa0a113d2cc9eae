"""A mailbox that a local SMTP server (aiosmtpd) delivers into."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import default
from typing import Any


class Mailbox:
    """What a real SMTP server (aiosmtpd, on a local port) received."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=default))
        return "250 OK"

    def to(self, address: str) -> list:
        return [m for m in self.messages if m["To"] == address]

    def last_code(self, address: str) -> str:
        found = self.to(address)
        assert found, f"no mail to {address}; got {[m['To'] for m in self.messages]}"
        body = found[-1].get_body(preferencelist=("plain",)).get_content()
        match = re.search(r"\b(\d{6})\b", body)
        assert match, body
        return match.group(1)
