"""An offer as each channel will show it, made by the same functions that render it for
delivery (`messages.py`), for a sample member who reads `language`: the email (subject,
text, HTML), the text message with its length and parts, and the portal card."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from loyalty.marketing import messages, schemas

SAMPLE_MEMBER = UUID(int=0)
SAMPLE_EMAIL = "member@example.com"
SAMPLE_PHONE = "+8613800000000"
SAMPLE_CODE = "SAMPLE-CODE"

# The GSM 03.38 basic alphabet: a text message using only these is 160 characters a part
# (153 when split); any other character makes it UCS-2, 70 a part (67 when split).
GSM_7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_7_EXTENDED = set("^{}\\[~]|€")


class Preview(msgspec.Struct):
    language: str
    email_subject: str
    email_text: str
    email_html: str
    sms_text: str
    sms_length: int  # characters (GSM-7 counts extended characters twice)
    sms_encoding: str  # GSM-7 | UCS-2
    sms_parts: int
    portal_title: str
    portal_body: str


def sms_parts(text: str) -> tuple[int, str, int]:
    """(length, encoding, parts) of a text message as carriers count them."""
    if all(c in GSM_7 or c in GSM_7_EXTENDED for c in text):
        length = sum(2 if c in GSM_7_EXTENDED else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        # UCS-2 counts UTF-16 code units: characters beyond the BMP take two.
        length = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    parts = 1 if length <= single else -(-length // multi)
    return length, encoding, parts


def _row(offer: schemas.Offer) -> dict[str, Any]:
    """The offer as the delivery code reads it (a row of `offers`)."""
    values: dict[str, Any] = msgspec.structs.asdict(offer)
    values["segment"] = offer.segment_id
    values["reward"] = offer.reward_id
    return values


def preview(offer: schemas.Offer, language: str) -> Preview:
    row = _row(offer)
    code = SAMPLE_CODE if offer.benefit == "voucher" else None
    member = {"member": SAMPLE_MEMBER, "voucher_code": code, "language": language}
    email = messages.email_for(row, {**member, "address": SAMPLE_EMAIL})
    sms = messages.sms_for(row, {**member, "address": SAMPLE_PHONE})
    title, body = messages.offer_text(row, language)
    if code:  # the inbox entry carries the code the same way (delivery's inbox insert)
        body += messages.code_line(language) + code
    length, encoding, parts = sms_parts(sms)
    return Preview(
        language=language,
        email_subject=email.subject,
        email_text=email.text,
        email_html=email.html or "",
        sms_text=sms,
        sms_length=length,
        sms_encoding=encoding,
        sms_parts=parts,
        portal_title=title,
        portal_body=body,
    )
