"""Query parameters that mean the same on every API endpoint that takes them."""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

# A page of a list: at most 200 rows, starting at most 100,000 rows in.
PageLimit = Annotated[int, QueryParameter(ge=1, le=200)]
PageOffset = Annotated[int, QueryParameter(ge=0, le=100_000)]
