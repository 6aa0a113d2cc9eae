"""Unsubscribe links: every marketing message carries a signed link per member and channel,
and following it withdraws that consent (recorded like any other change of the archive)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from uuid import UUID

from loyalty.infrastructure import db
from loyalty.settings import get_settings


def _signature(member_id: UUID, channel: str) -> str:
    key = get_settings().secret_key.encode()
    digest = hmac.new(key, f"unsubscribe:{member_id}:{channel}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:18]).decode()


def unsubscribe_token(member_id: UUID, channel: str) -> str:
    return f"{member_id.hex}.{channel}.{_signature(member_id, channel)}"


def read_token(token: str) -> tuple[UUID, str] | None:
    try:
        member_hex, channel, signature = token.split(".")
        member_id = UUID(hex=member_hex)
    except ValueError:
        return None
    if channel not in ("email", "sms") or not hmac.compare_digest(
        signature, _signature(member_id, channel)
    ):
        return None
    return member_id, channel


def unsubscribe_url(member_id: UUID, channel: str) -> str:
    return f"{get_settings().public_url}/unsubscribe/{unsubscribe_token(member_id, channel)}"


UNSUBSCRIBE_SQL = """
WITH old AS (
    SELECT id, coalesce(contact_preferences, '{}'::jsonb) AS prefs FROM members
    WHERE id = $1 FOR UPDATE
), new AS (
    SELECT id, prefs, jsonb_set(prefs, '{consents}', (
        SELECT coalesce(jsonb_agg(c), '[]'::jsonb)
        FROM jsonb_array_elements(
            CASE WHEN jsonb_typeof(prefs->'consents') = 'array' THEN prefs->'consents'
                 ELSE '[]'::jsonb END) c
        WHERE c->>'channel' <> $2
    ) || jsonb_build_array(jsonb_build_object(
        'channel', $2::text, 'granted', false, 'at', to_jsonb(now()),
        'method', 'unsubscribe link'))) AS updated
    FROM old
), changed AS (
    UPDATE members m SET contact_preferences = new.updated, updated_at = now()
    FROM new WHERE m.id = new.id
    RETURNING m.id
)
INSERT INTO member_changes (id, member, action, actor, changes, at)
SELECT gen_random_uuid(), new.id, 'update', 'member:unsubscribe link',
       jsonb_build_object('contact_preferences',
           jsonb_build_object('old', new.prefs, 'new', new.updated)), now()
FROM new JOIN changed ON changed.id = new.id
RETURNING member
"""


async def withdraw_consent(token: str) -> str | None:
    """Withdraw the consent the signed link names; the channel, or None for a bad link."""
    found = read_token(token)
    if found is None:
        return None
    member_id, channel = found
    async with db.transaction() as conn:
        done = await conn.fetchval(UNSUBSCRIBE_SQL, member_id, channel)
    return channel if done is not None else None
