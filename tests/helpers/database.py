"""Where the test database and servers live, and what the database holds."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PROJECT = Path(__file__).resolve().parents[2]
TEST_DATA_DIR = Path(os.environ.get("LOYALTY_TEST_DATA_DIR", PROJECT / ".loyalty-test"))
TEST_DATABASE = "loyalty_test"


def with_database(url: str, name: str) -> str:
    """The same server URL, naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def all_tables() -> list[str]:
    """Every table the application's Piccolo apps declare."""
    from piccolo.conf.apps import Finder

    return [table._meta.tablename for table in Finder().get_table_classes()]
