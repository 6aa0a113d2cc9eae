"""Every user-facing string of the portal is in the Chinese catalog, translated, and the
compiled catalog the app loads is up to date."""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from loyalty.infrastructure import i18n

PROJECT = Path(__file__).resolve().parents[2]
PO = i18n.LOCALE_DIR / "zh_Hans" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")


def _ids(catalog) -> set:
    return {m.id for m in catalog if m.id}


def test_every_string_in_the_code_is_translated(tmp_path):
    pot = tmp_path / "messages.pot"
    CommandLineInterface().run(
        [
            "pybabel",
            "--quiet",
            "extract",
            "-F",
            str(PROJECT / "babel.cfg"),
            "-k",
            "N_",
            "-o",
            str(pot),
            "--no-location",
            "--omit-header",
            str(PROJECT),
        ]
    )
    wanted = _ids(read_po(pot.open("rb")))
    assert len(wanted) > 150, "the extraction found the portal's strings"
    catalog = read_po(PO.open("rb"))
    assert wanted - _ids(catalog) == set(), "run pybabel update (loyalty/locale/README.md)"
    untranslated = [
        m.id
        for m in catalog
        if m.id and (not m.string or (isinstance(m.string, tuple) and not all(m.string)))
    ]
    assert untranslated == []
    assert not [m.id for m in catalog if m.id and m.fuzzy]


def test_the_compiled_catalog_matches_the_sources():
    def plain(value):
        return tuple(value) if isinstance(value, list | tuple) else value

    source = {plain(m.id): plain(m.string) for m in read_po(PO.open("rb")) if m.id}
    compiled = {plain(m.id): plain(m.string) for m in read_mo(io.BytesIO(MO.read_bytes())) if m.id}
    assert compiled == source, "run pybabel compile (loyalty/locale/README.md)"


def test_language_comes_from_the_switch_then_the_cookie_then_the_browser():
    assert i18n.choose(None, None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert i18n.choose(None, None, "fr-FR, en;q=0.5, zh;q=0.7") == "zh"
    assert i18n.choose(None, "en", "zh-CN") == "en"
    assert i18n.choose("zh", "en", "en") == "zh"
    assert i18n.choose(None, None, "de-DE") == "en"
    assert i18n.choose("xx", None, None) == "en"
