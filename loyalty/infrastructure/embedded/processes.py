"""Process, pidfile, lock, socket-folder and log helpers shared by the embedded servers, and
`stop_pids_in`, the last resort that kills what a data folder still runs.

Linux /proc is used when available; elsewhere a check degrades to "the pid is alive".
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

PG_COMMS = ("postgres", "postmaster")
STOP_TIMEOUT = 10.0
# sun_path is 108 bytes including the NUL; keep a margin.
MAX_SOCKET_PATH = 100
# Socket paths also end up verbatim in DSNs (arq does not unquote unix:// paths) and in
# postgres' command line, so anything outside this set goes to a short /tmp folder instead.
SAFE_PATH = re.compile(r"[A-Za-z0-9_./+-]+")
LOG_ROTATE_BYTES = 10 * 1024 * 1024


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started or stopped."""


# ---------------------------------------------------------------------------------------
# Process helpers (Linux /proc when available; degrade to "pid alive" elsewhere)


def pid_exists(pid: int) -> bool:
    """True for any process with this pid, zombies included (what postgres checks)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    return True


def pid_alive(pid: int) -> bool:
    if not pid_exists(pid):
        return False
    # A zombie is dead for our purposes; in containers PID 1 may never reap it.
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line.rsplit(")", 1)[-1].split()[0] != "Z"


def pid_comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def pid_cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def children_of(pid: int) -> list[int]:
    children = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def postgres_processes_under(root: Path) -> list[int]:
    """postgres processes working in a data directory under root, with or without a live
    postmaster: backends orphaned by a killed postmaster still hold shared memory."""
    found = []
    with contextlib.suppress(OSError):
        root = root.resolve()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or pid_comm(int(entry.name)) not in PG_COMMS:
                continue
            cwd = pid_cwd(int(entry.name))
            if cwd is not None and cwd.is_relative_to(root) and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every pid has exited; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if pid_alive(p)]
    return alive


def send_signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def read_pid(pidfile: Path) -> int | None:
    try:
        first = pidfile.read_text().split("\n", 1)[0].strip()
        return int(first)
    except (OSError, ValueError):
        return None


def terminate(pid: int, first: signal.Signals, *, timeout: float = STOP_TIMEOUT) -> None:
    """Ask politely with `first`, then SIGKILL the process and any children left behind."""
    children = children_of(pid)
    send_signal(pid, first)
    if not wait_gone([pid], timeout):
        return
    for p in [pid, *children, *children_of(pid)]:
        send_signal(p, signal.SIGKILL)
    if wait_gone([pid, *children], 5.0):
        raise EmbeddedServiceError(f"process {pid} survived SIGKILL")


def stop_pids_in(data_dir: Path) -> None:
    """Kill every postgres/redis server whose pidfile lies under data_dir.

    Last resort for CI and crashed runs: the normal path is EmbeddedPostgres.stop() and
    EmbeddedRedis.stop(). A pid is only signalled if it still belongs to a process of the
    right kind, so a recycled pid in a stale pidfile never hits an unrelated process.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return
    targets: list[tuple[int, signal.Signals]] = []
    for pidfile in data_dir.rglob("postmaster.pid"):
        pid = read_pid(pidfile)
        if pid and pid_alive(pid) and pid_comm(pid) in (None, *PG_COMMS):
            # SIGINT is PostgreSQL's fast shutdown; SIGTERM (smart) would wait for clients.
            targets.append((pid, signal.SIGINT))
    for pidfile in data_dir.rglob("redis.pid"):
        pid = read_pid(pidfile)
        comm = pid_comm(pid) if pid else None
        if pid and pid_alive(pid) and (comm is None or comm.startswith("redis")):
            targets.append((pid, signal.SIGTERM))
    children = {pid: children_of(pid) for pid, _ in targets}
    for pid, sig in targets:
        send_signal(pid, sig)
    survivors = wait_gone([pid for pid, _ in targets], 5.0)
    for pid in survivors:
        for p in [pid, *children[pid], *children_of(pid)]:
            send_signal(p, signal.SIGKILL)
    wait_gone(survivors, 5.0)
    # Backends whose postmaster was SIGKILLed (or whose pidfile was deleted) remain.
    orphans = postgres_processes_under(data_dir)
    for pid in orphans:
        send_signal(pid, signal.SIGKILL)
    wait_gone(orphans, 5.0)
    # Short socket folders under /tmp are only removed by stop(); tidy them here too.
    for note in data_dir.rglob("socket-dir"):
        with contextlib.suppress(OSError):
            remove_dir_if_empty(Path(note.read_text().strip()), note.parent)


# ---------------------------------------------------------------------------------------
# Shared filesystem helpers


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise starts across processes (two CLI commands racing to initdb/start)."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def socket_dir_for(data_dir: Path, kind: str, socket_name: str) -> Path:
    """data_dir itself when the socket path fits, else a short per-data-dir /tmp folder."""
    if len(str(data_dir / socket_name)) <= MAX_SOCKET_PATH and SAFE_PATH.fullmatch(str(data_dir)):
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return Path("/tmp") / f"loyalty-{kind}-{digest}"


def remembered(data_dir: Path, name: str) -> Path | None:
    """A path a server's start wrote down in its data folder (see `remember`), or None."""
    try:
        text = (data_dir / name).read_text().strip()
    except OSError:
        return None
    return Path(text) if text else None


def remember(data_dir: Path, name: str, value: Path) -> None:
    with contextlib.suppress(OSError):
        (data_dir / name).write_text(f"{value}\n")


def socket_dir_in_use(data_dir: Path, kind: str, socket_name: str) -> Path:
    """Where the server listens: a running one where it was told when started, even if the
    rule of `socket_dir_for` changed since."""
    return remembered(data_dir, "socket-dir") or socket_dir_for(data_dir, kind, socket_name)


def new_socket_dir(
    data_dir: Path, kind: str, socket_name: str, owner: pwd.struct_passwd | None
) -> Path:
    """The socket folder for a server starting now: made private when it is not data_dir
    itself, and remembered for `socket_dir_in_use`."""
    socket_dir = socket_dir_for(data_dir, kind, socket_name)
    if socket_dir != data_dir:
        prepare_private_dir(socket_dir, owner)
    remember(data_dir, "socket-dir", socket_dir)
    return socket_dir


def prepare_private_dir(path: Path, owner: pwd.struct_passwd | None) -> None:
    """Create a 0700 folder owned by the server's user; refuse one planted by someone else."""
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    uid = owner.pw_uid if owner else os.geteuid()
    if not stat.S_ISDIR(st.st_mode):
        raise EmbeddedServiceError(f"{path} exists and is not a directory")
    if st.st_uid != uid:
        if os.geteuid() != 0 or st.st_uid != 0:
            raise EmbeddedServiceError(f"{path} is owned by uid {st.st_uid}, expected {uid}")
        os.chown(path, uid, owner.pw_gid if owner else -1)
    os.chmod(path, 0o700)


def remove_dir_if_empty(path: Path, data_dir: Path) -> None:
    """Remove a short /tmp socket folder once its server is gone (never anything else)."""
    if path != data_dir and path.name.startswith("loyalty-"):
        with contextlib.suppress(OSError):
            path.rmdir()


def rotate_log(log: Path) -> None:
    with contextlib.suppress(OSError):
        if log.stat().st_size > LOG_ROTATE_BYTES:
            log.replace(log.with_name(log.name + ".old"))


def log_tail(log: Path, offset: int = 0, lines: int = 15) -> str:
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def short(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run(
    cmd: list[str],
    *,
    user: pwd.struct_passwd | None,
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    extra: dict[str, Any] = {}
    if user is not None:
        extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    # start_new_session: a Ctrl-C in the terminal must not reach the servers directly;
    # the CLI stops them in order (and only the ones it started).
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        cwd=cwd,
        timeout=timeout,
        input=input,
        start_new_session=True,
        **extra,
    )


@dataclass
class EmbeddedServer:
    """A server kept in a data folder: one already running there is reused, else one is
    started, under the folder's lock so that two processes never start two."""

    name: ClassVar[str]  # the server's log in the data folder is `<name>.log`

    data_dir: Path
    started_here: bool = False

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().absolute()

    @property
    def log_file(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def ensure_running(self) -> str:
        """The server's address (see `address`), started first if none runs here."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked(self.data_dir / ".lock"):
            if not self._reuse_running():
                self._start()
                self.started_here = True
            return self.address()

    def address(self) -> str:
        raise NotImplementedError

    def _reuse_running(self) -> bool:
        """Whether a server that runs on this folder answers, and is now the one used."""
        raise NotImplementedError

    def _start(self) -> None:
        raise NotImplementedError
