"""Messages to members through the company's channels: email over SMTP, text messages
through a pluggable sender. Without SMTP or an SMS provider configured (the demo) messages
are written to the data folder's outbox, so nothing is lost and a person can read them."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Protocol

import aiosmtplib
import httpx

from loyalty.errors import ServiceUnavailable
from loyalty.settings import Settings, get_settings

log = logging.getLogger("loyalty.infrastructure.messaging")


@dataclass
class Email:
    to: str
    subject: str
    text: str
    html: str | None = None


def outbox_dir(settings: Settings) -> Path:
    return settings.data_dir / "outbox"


async def send_email(email: Email, settings: Settings | None = None) -> None:
    """Deliver now over SMTP (the caller decides what a failure means for its user)."""
    settings = settings or get_settings()
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = make_msgid(domain="loyalty")
    message.set_content(email.text)
    if email.html:
        message.add_alternative(email.html, subtype="html")
    if not settings.smtp_host:
        folder = outbox_dir(settings)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        (folder / f"{stamp}-{email.to}.eml").write_bytes(bytes(message))
        return
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user or None,
            password=settings.smtp_password or None,
            start_tls=settings.smtp_starttls,
            timeout=10,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        log.warning("email to %s failed: %s", email.to, exc)
        raise ServiceUnavailable("the message could not be sent just now; try again") from exc


class SmsSender(Protocol):
    async def send(self, phone: str, text: str) -> None: ...


class WebhookSmsSender:
    """Posts {"to", "text"} as JSON to the provider's HTTP endpoint."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def send(self, phone: str, text: str) -> None:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(self.url, json={"to": phone, "text": text})
                response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("text message to %s failed: %s", phone, exc)
            raise ServiceUnavailable("the message could not be sent just now; try again") from exc


class OutboxSmsSender:
    """Appends each message to outbox/sms.jsonl in the data folder (the demo's phone)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, phone: str, text: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"at": datetime.now(UTC).isoformat(), "to": phone, "text": text})
        with (self.folder / "sms.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def sms_sender(settings: Settings | None = None) -> SmsSender:
    settings = settings or get_settings()
    if settings.sms_webhook_url:
        return WebhookSmsSender(settings.sms_webhook_url)
    return OutboxSmsSender(outbox_dir(settings))
