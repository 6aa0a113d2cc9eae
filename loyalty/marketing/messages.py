"""What a member receives for an offer: the portal inbox entry, the email and the text
message, the last two with their unsubscribe link."""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any
from uuid import UUID

from loyalty.infrastructure import messaging
from loyalty.marketing.unsubscribe import unsubscribe_url
from loyalty.settings import get_settings


def _validity(offer: Any) -> str:
    tz = get_settings().tz
    start = offer["valid_from"].astimezone(tz).strftime("%Y-%m-%d")
    end = (offer["valid_until"].astimezone(tz) - timedelta(seconds=1)).strftime("%Y-%m-%d")
    return f"{start} – {end}"


def inbox_text(offer: Any) -> tuple[str, str]:
    title = offer["title_en"] + (f" · {offer['title_zh']}" if offer["title_zh"] else "")
    body = offer["body_en"] + (f"\n\n{offer['body_zh']}" if offer["body_zh"] else "")
    return title[:200], f"{body}\n\nValid {_validity(offer)}"[:1900]


def email_for(offer: Any, row: dict[str, Any]) -> messaging.Email:
    member_id = UUID(str(row["member"]))
    link = unsubscribe_url(member_id, "email")
    title, body = inbox_text(offer)
    code = row.get("voucher_code")
    code_line = f"\n\nYour code / 您的优惠码: {code}" if code else ""
    text = f"{body}{code_line}\n\nTo stop these emails / 退订: {link}\n"
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n\n"))
    code_html = (
        f"<p>Your code / 您的优惠码: <strong>{html.escape(code)}</strong></p>" if code else ""
    )
    page = (
        f"<!doctype html><html><body><h1>{html.escape(title)}</h1>{paragraphs}{code_html}"
        f'<p style="font-size:small"><a href="{html.escape(link)}">Unsubscribe / 退订</a></p>'
        "</body></html>"
    )
    return messaging.Email(to=row["address"], subject=title, text=text, html=page)


def sms_for(offer: Any, row: dict[str, Any]) -> str:
    member_id = UUID(str(row["member"]))
    code = row.get("voucher_code")
    text = offer["title_zh"] or offer["title_en"]
    if code:
        text += f" {code}"
    return f"{text} ({_validity(offer)}) 退订 STOP: {unsubscribe_url(member_id, 'sms')}"
