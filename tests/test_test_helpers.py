"""Shared test helpers live in tests/helpers/: a test module or conftest.py imported by another
file would run its tests or fixtures twice and tie unrelated tests together. Read from the
source with `ast`, so such an import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_test_module(dotted: str) -> bool:
    last = dotted.rsplit(".", 1)[-1]
    return last == "conftest" or last.startswith("test_")


def imported_test_modules(source: str) -> list[str]:
    """The test modules and conftests that this source imports, by dotted name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import test_module` imports a module too.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [n for n in names if n.startswith("tests.") and _is_test_module(n)]
    return found


def test_the_check_sees_each_form_of_import():
    # Written with a stand-in for the package, so that a grep for such imports stays empty.
    source = """
import PKG.points.test_ledger
from PKG.conftest import purchase_body
from PKG.rewards import test_rewards
def later():
    from PKG.marketing.test_offers import make_offer
from PKG.helpers.purchases import purchase_body
import loyalty.points.test_like_name
""".replace("PKG", "tests")
    assert imported_test_modules(source) == [
        "tests.points.test_ledger",
        "tests.conftest",
        "tests.rewards.test_rewards",
        "tests.marketing.test_offers",
    ]


def test_no_file_imports_a_test_module_or_a_conftest():
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if (found := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "move the shared names into tests/helpers/"
