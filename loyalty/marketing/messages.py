"""What a member receives: the portal inbox entry (both languages, the reader's shown), the
email and the text message (in the member's language, with their unsubscribe link), for an
offer or a points expiry warning."""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any
from uuid import UUID

from loyalty.infrastructure import i18n, messaging
from loyalty.infrastructure.i18n import N_
from loyalty.marketing.unsubscribe import unsubscribe_url
from loyalty.settings import get_settings

VALID = N_("Valid %(dates)s")
YOUR_CODE = N_("Your voucher code: %(code)s")
STOP_EMAILS = N_("To stop these emails: %(link)s")
UNSUBSCRIBE = N_("Unsubscribe")
STOP_TEXTS = N_("Unsubscribe: %(link)s")


def _validity(offer: Any) -> str:
    tz = get_settings().tz
    start = offer["valid_from"].astimezone(tz).strftime("%Y-%m-%d")
    end = (offer["valid_until"].astimezone(tz) - timedelta(seconds=1)).strftime("%Y-%m-%d")
    return f"{start} – {end}"


def has_chinese(offer: Any) -> bool:
    return bool(offer["title_zh"] or offer["body_zh"])


def offer_text(offer: Any, language: str) -> tuple[str, str]:
    """The offer's title and body in `language` (the English where it has no Chinese), with
    its validity."""
    zh = language == "zh" and has_chinese(offer)
    title = (offer["title_zh"] or offer["title_en"]) if zh else offer["title_en"]
    body = (offer["body_zh"] or offer["body_en"]) if zh else offer["body_en"]
    with i18n.speaking("zh" if zh else "en"):
        validity = i18n.gettext(VALID) % {"dates": _validity(offer)}
    return title[:200], f"{body}\n\n{validity}"[:1900]


def code_line(language: str) -> str:
    """The voucher code line's words in `language`, up to the code itself."""
    with i18n.speaking(language):
        return "\n\n" + i18n.gettext(YOUR_CODE) % {"code": ""}


def inbox_text(offer: Any) -> tuple[str, str, str | None, str | None]:
    """The inbox entry: English title and body, and the Chinese ones if the offer has them."""
    title, body = offer_text(offer, "en")
    if not has_chinese(offer):
        return title, body, None, None
    title_zh, body_zh = offer_text(offer, "zh")
    return title, body, title_zh, body_zh


def email(to: str, subject: str, body: str, link: str, language: str) -> messaging.Email:
    """A member's email: plain text and HTML, with the unsubscribe link in their language."""
    with i18n.speaking(language):
        stop = i18n.gettext(STOP_EMAILS) % {"link": link}
        unsubscribe = i18n.gettext(UNSUBSCRIBE)
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n\n"))
    page = (
        f'<!doctype html><html lang="{"zh-Hans" if language == "zh" else "en"}"><body>'
        f"<h1>{html.escape(subject)}</h1>{paragraphs}"
        f'<p style="font-size:small"><a href="{html.escape(link)}">{html.escape(unsubscribe)}</a></p>'
        "</body></html>"
    )
    return messaging.Email(to=to, subject=subject, text=f"{body}\n\n{stop}\n", html=page)


def language_of(row: dict[str, Any]) -> str:
    """A delivery's language: the member's chosen one, else the platform default (a job
    has no request to take an Accept-Language from)."""
    return i18n.member_language(row.get("language"), None)


def email_for(offer: Any, row: dict[str, Any]) -> messaging.Email:
    language = language_of(row)
    member_id = UUID(str(row["member"]))
    title, body = offer_text(offer, language)
    code = row.get("voucher_code")
    if code:
        with i18n.speaking(language):
            body += "\n\n" + i18n.gettext(YOUR_CODE) % {"code": code}
    return email(row["address"], title, body, unsubscribe_url(member_id, "email"), language)


def sms_for(offer: Any, row: dict[str, Any]) -> str:
    language = language_of(row)
    member_id = UUID(str(row["member"]))
    code = row.get("voucher_code")
    text, _ = offer_text(offer, language)
    if code:
        text += f" {code}"
    # A plain hyphen: one en dash would turn an English text into UCS-2, 70 characters a part.
    return sms(f"{text} ({_validity(offer).replace('–', '-')})", member_id, language)


def sms(text: str, member_id: UUID, language: str) -> str:
    """A text message with the unsubscribe link in the member's language."""
    with i18n.speaking(language):
        stop = i18n.gettext(STOP_TEXTS) % {"link": unsubscribe_url(member_id, "sms")}
    return f"{text} {stop}"
