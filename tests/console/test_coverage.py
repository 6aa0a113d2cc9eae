"""Every staff operation of the API has a console page, or says why integrations alone use
it; the README's table of them is generated from the app's routes and must match.
`LOYALTY_UPDATE_README=1 pytest tests/console/test_coverage.py` rewrites the table."""

from __future__ import annotations

import os
from pathlib import Path

from loyalty.http.routes import COVERS, api_routes, console_coverage

README = Path(__file__).resolve().parents[2] / "README.md"
START = "<!-- console-coverage:start -->"
END = "<!-- console-coverage:end -->"


def _table(rows) -> str:
    lines = [
        "| API operation | permission | console page |",
        "| --- | --- | --- |",
    ]
    for row in rows:
        where = (
            ", ".join(f"`{page}`" for page in row.pages)
            if row.pages
            else f"integration only: {row.integration_only}"
        )
        permission = ", ".join(row.permissions) or "any staff user"
        lines.append(f"| `{row.operation}` | {permission} | {where} |")
    return "\n".join(lines)


def test_every_staff_operation_has_a_page_or_a_reason(app):
    rows = console_coverage(app)
    assert len(rows) > 100, "the staff operations were found"
    missing = [row.operation for row in rows if not row.pages and not row.integration_only]
    assert missing == [], "give these a console page (opt=covers(...)) or integration_only(...)"


def test_the_readme_table_is_the_generated_one(app):
    text = README.read_text()
    assert START in text and END in text
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    table = _table(console_coverage(app))
    if os.environ.get("LOYALTY_UPDATE_README"):
        README.write_text(f"{before}{START}\n{table}\n{END}{after}")
        return
    assert rest.split(END, 1)[0].strip() == table, "LOYALTY_UPDATE_README=1 rewrites it"


def test_a_covered_operation_names_a_real_api_operation(app):
    """A page that claims an operation the API does not have is a typo."""
    real = {f"{route.method} {route.path}" for route in api_routes(app)}
    claimed = {
        operation
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        for operation in (handler.opt or {}).get(COVERS, ())
    }
    assert claimed - real == set()
