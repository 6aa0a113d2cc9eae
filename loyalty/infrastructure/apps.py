"""Each domain's Piccolo app (its tables and migrations), declared the same way. Kept apart from
the database module: Piccolo's app registry pulls in its migration tooling, which the web and
worker processes never need."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from piccolo.conf.apps import AppConfig
from piccolo.table import Table

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def domain_app(name: str, tables: ModuleType, *, after: Iterable[str] = ()) -> AppConfig:
    """A domain's Piccolo app: every table its `tables` module defines (not the ones it
    imports), in the order defined, migrated from migrations/<name> after the apps of the
    domains named in `after`."""
    table_classes = [
        value
        for value in vars(tables).values()
        if isinstance(value, type)
        and issubclass(value, Table)
        and value.__module__ == tables.__name__
    ]
    return AppConfig(
        app_name=name,
        migrations_folder_path=str(MIGRATIONS / name),
        table_classes=table_classes,
        migration_dependencies=[f"loyalty.{domain}.piccolo_app" for domain in after],
        commands=[],
    )
