"""Member messages in both languages: `title`/`body` hold the English text (or the only text
a message was written in), `title_zh`/`body_zh` the Chinese, NULL where a message has one
text only (existing rows, staff replies): readers fall back to `title`/`body`.

Offer messages so far joined both titles in one ("Gold evening · 黄金之夜"): their titles are
split again from the offer (bodies, which held both texts, stay readable as they are)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-08T01:15:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "offer message titles split by language"

STATEMENTS = """
DO $$
BEGIN
    IF to_regclass('offer_deliveries') IS NOT NULL AND to_regclass('offers') IS NOT NULL THEN
        UPDATE member_notifications n
        SET title = o.title_en, title_zh = nullif(o.title_zh, '')
        FROM offer_deliveries d JOIN offers o ON o.id = d.offer
        WHERE n.kind = 'offer' AND n.event = d.id;
    END IF;
END $$;
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="events", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
