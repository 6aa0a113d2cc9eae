"""The one Piccolo engine, pointed at the configured (or embedded) PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any, Literal, TypeVar

import asyncpg
import msgspec
from piccolo.engine.postgres import PostgresEngine

engine = PostgresEngine(config={"dsn": os.environ.get("LOYALTY_DATABASE_URL", "")})


def configure_engine(database_url: str) -> None:
    """Point the engine at a database; call before the pool starts."""
    engine.config = {"dsn": database_url}


S = TypeVar("S", bound=msgspec.Struct)


def from_row(schema: type[S], row: Mapping[str, Any], **fields: Any) -> S:
    """`schema` filled from a row: each field from the column of its name, unless `fields`
    gives it (a column named otherwise, a value worked out); other columns are left out."""
    return msgspec.convert({**row, **fields}, schema)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to reset on release: the app sets no session state, LISTENs to nothing and
    takes no advisory locks (asyncpg still rolls back an open transaction). Skipping the
    default RESET ALL saves a round trip per request."""


async def start_pool(max_size: int = 20) -> None:
    await engine.start_connection_pool(
        min_size=1,
        max_size=max_size,
        command_timeout=30,
        reset=_keep_session,
        # JIT compiling pays off only for long analytical queries; here it added ~0.3 s to
        # every batch of the tier evaluation and nothing to the short statements.
        server_settings={"jit": "off"},
    )


async def close_pool() -> None:
    await engine.close_connection_pool()


def split_sql(script: str) -> list[str]:
    """Split a SQL script into statements, keeping $$-quoted function bodies whole."""
    statements, current, in_body = [], [], False
    for line in script.splitlines():
        current.append(line)
        if line.count("$$") % 2:
            in_body = not in_body
        if not in_body and line.rstrip().endswith(";"):
            statement = "\n".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current).strip())
    return statements


async def run_script(script: str) -> None:
    """Run a multi-statement script (migrations) one statement at a time."""
    for statement in split_sql(script):
        await engine.run_ddl(statement)


@asynccontextmanager
async def connection() -> AsyncIterator[asyncpg.Connection]:
    """The current transaction's connection, else one from the pool (or a new one)."""
    current = engine.current_transaction.get()
    if current is not None:
        yield current.connection
    elif engine.pool is not None:
        async with engine.pool.acquire() as conn:
            yield conn
    else:
        conn = await engine.get_new_connection()
        try:
            yield conn
        finally:
            await conn.close()


def in_transaction() -> bool:
    """Whether this task runs inside a `transaction()`."""
    return engine.current_transaction.get() is not None


_BEGIN = {
    "generic": "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan",
    # A page fetched by an index priced as the cached page it is: at the default price (4 x
    # a page read in sequence) a batch of 1,000 purchases hashed all 100,000 members (41 ms)
    # instead of probing an index 1,000 times (1 ms), and scanned every purchase to look for
    # its external_ids. (Not plan_cache_mode = force_custom_plan: it would also re-plan the
    # foreign key checks and trigger statements of every row, which was half the
    # database's work in a batch.)
    "custom": "BEGIN; SET LOCAL random_page_cost = 1.1",
}


class FreshPlans:
    """A connection whose statements with arguments are each planned for the arguments at
    hand, as a statement prepared for the one call (a plan cached per connection is made for
    one size of array and is wrong for another). Everything else is the connection's."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def fetch(self, query: str, *args: Any) -> list:
        if not args:
            return await self._conn.fetch(query)
        return await (await self._conn.prepare(query)).fetch(*args)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        if not args:
            return await self._conn.fetchrow(query)
        return await (await self._conn.prepare(query)).fetchrow(*args)

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        if not args:
            return await self._conn.fetchval(query, column=column)
        return await (await self._conn.prepare(query)).fetchval(*args, column=column)

    async def execute(self, query: str, *args: Any) -> str:
        if not args:
            return await self._conn.execute(query)
        statement = await self._conn.prepare(query)
        await statement.fetch(*args)
        return statement.get_statusmsg()


class TransactionChain:
    """Transactions one after another on one connection, each begun in the same round trip
    as the previous one's COMMIT. `transaction()` inside joins the one that is open."""

    def __init__(self, conn: asyncpg.Connection, begin: str) -> None:
        self.conn = conn
        self._begin = begin
        self._open = False

    async def begin(self) -> None:
        if not self._open:
            await self.conn.execute(self._begin)
            self._open = True

    async def commit(self, *, begin_next: bool) -> None:
        self._open = False
        await self.conn.execute(f"COMMIT; {self._begin}" if begin_next else "COMMIT")
        self._open = begin_next

    async def rollback(self) -> None:
        if self._open:
            self._open = False
            # A broken connection cannot roll back; the pool rolls back or discards it.
            with suppress(Exception):
                await self.conn.execute("ROLLBACK")


@asynccontextmanager
async def transaction_chain(
    *, plans: Literal["generic", "custom"]
) -> AsyncIterator[TransactionChain]:
    """A `TransactionChain` on a connection of the pool (`plans` as for `transaction()`);
    what is still open when the block ends is rolled back."""
    async with connection() as conn:
        if plans == "custom":
            conn = FreshPlans(conn)  # type: ignore[assignment]
        chain = TransactionChain(conn, _BEGIN[plans])
        token = engine.current_transaction.set(_Transaction(conn))  # type: ignore[arg-type]
        try:
            yield chain
        finally:
            engine.current_transaction.reset(token)
            await chain.rollback()


class _Transaction:
    """What Piccolo's queries look for in `engine.current_transaction`: the connection."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection


@asynccontextmanager
async def transaction(
    *, plans: Literal["generic", "custom"] | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction shared by Piccolo queries and raw asyncpg calls made inside it;
    nested use joins the outer transaction.

    `plans`: how this transaction's prepared statements are planned. "generic": once per
    connection; PostgreSQL would otherwise re-plan statements over unnest($1::...[]) arrays
    on every call (a one-element array always looks cheaper than the generic plan's guess):
    planning was a third of the database's work per purchase. "custom": the statements sent
    for the values at hand, always (`FreshPlans`); the same statements carrying a thousand
    rows must not pick up the generic plan made for one (it once made a batch's plan
    quadratic). Only for statements whose
    best plan does not depend on the values (index lookups by key) use "generic".

    Not Piccolo's own `engine.transaction()`: when COMMIT itself fails (a deferred
    constraint, a serialization failure) it never returns the connection to the pool.
    """
    current = engine.current_transaction.get()
    if current is not None:
        yield current.connection
        return
    if plans:
        # BEGIN and the setting in one round trip (asyncpg's transaction() would send BEGIN
        # alone); what fails rolls back when the chain ends.
        async with transaction_chain(plans=plans) as chain:
            await chain.begin()
            yield chain.conn
            await chain.commit(begin_next=False)
        return
    async with connection() as conn:
        token = engine.current_transaction.set(_Transaction(conn))  # type: ignore[arg-type]
        try:
            async with conn.transaction():
                yield conn
        finally:
            engine.current_transaction.reset(token)
