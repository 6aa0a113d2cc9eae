"""HTML forms: the CSRF token a page carries."""

from __future__ import annotations

import re


def csrf_from(html: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)
