"""Embedded PostgreSQL: a cluster in `<data folder>/pgdata`, reached on a unix socket only,
started (or adopted when already running) on demand and stopped with a fast shutdown."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from loyalty.infrastructure.embedded.postgres_binaries import (
    PG_SUPERUSER,
    Candidate,
    clean_env,
    default_postgres_bin_dirs,
    initdb,
    make_traversable,
    pgserver_bin_dir,
    postgres_system_user,
    probe,
)
from loyalty.infrastructure.embedded.processes import (
    PG_COMMS,
    EmbeddedServer,
    EmbeddedServiceError,
    children_of,
    file_size,
    log_tail,
    new_socket_dir,
    pid_alive,
    pid_comm,
    pid_cwd,
    pid_exists,
    postgres_processes_under,
    remember,
    remembered,
    remove_dir_if_empty,
    rotate_log,
    run,
    send_signal,
    short,
    socket_dir_in_use,
    terminate,
    wait_gone,
)

PG_PORT = 5432  # only names the socket file (.s.PGSQL.5432); no TCP listener is opened
PG_SETTINGS = {
    "listen_addresses": "",
    "port": str(PG_PORT),
    "max_connections": "200",
    "shared_buffers": "128MB",
}
PG_START_TIMEOUT = 60


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
class EmbeddedPostgres(EmbeddedServer):
    name = "postgres"

    bin_dirs: list[Path] | None = None
    bin_dir: Path | None = None
    _socket_dir: Path | None = field(default=None, init=False, repr=False)
    _version: str | None = field(default=None, init=False, repr=False)

    # -- paths ---------------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        if self._socket_dir is not None:
            return self._socket_dir
        return socket_dir_in_use(self.data_dir, "pg", f".s.PGSQL.{PG_PORT}")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_SUPERUSER}@/{database}?host={self.socket_dir}"

    # -- state ---------------------------------------------------------------------------

    def _postmaster(self) -> _Postmaster | None:
        """The live postmaster serving our pgdata, or None (missing or stale pidfile)."""
        info = _Postmaster.read(self.pgdata / "postmaster.pid")
        if info is None or not pid_alive(info.pid):
            return None
        if pid_comm(info.pid) not in (None, *PG_COMMS):
            return None  # pid recycled by an unrelated process
        cwd = pid_cwd(info.pid)  # the postmaster chdirs into its data directory
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

    def address(self) -> str:
        return self.dsn()

    def _reuse_running(self) -> bool:
        info = self._postmaster()
        if info is not None:
            info = self._wait_ready(info)
        if info is None:
            return False
        self._adopt(info)
        return True

    def _adopt(self, info: _Postmaster) -> None:
        if info.socket_dir:
            self._socket_dir = Path(info.socket_dir)
        if self.bin_dir is None:
            bin_dir = remembered(self.data_dir, "bin-dir")
            try:
                running = Path(os.readlink(f"/proc/{info.pid}/exe")).parent
            except OSError:
                running = None
            # Prefer the remembered spelling (e.g. via a venv symlink) when it is the same
            # folder, so describe() and comparisons match what the starter saw.
            if running is None or (bin_dir and bin_dir.resolve() == running):
                self.bin_dir = bin_dir
            else:
                self.bin_dir = running

    def _start(self) -> None:
        user = postgres_system_user()
        if user is not None:
            make_traversable(self.data_dir)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            if self.pgdata.exists() and self.pgdata.stat().st_uid != user.pw_uid:
                subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", self.pgdata])
        os.chmod(self.data_dir, 0o700)

        self._clear_stale_files()
        socket_dir = new_socket_dir(self.data_dir, "pg", f".s.PGSQL.{PG_PORT}", user)
        rotate_log(self.log_file)
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
                remember(self.data_dir, "bin-dir", bin_dir)
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
        orphans = postgres_processes_under(self.pgdata)
        for pid in wait_gone(orphans, 5.0):
            send_signal(pid, signal.SIGKILL)
        if wait_gone(orphans, 5.0):
            raise EmbeddedServiceError(f"old postgres processes in {self.pgdata} will not exit")
        pidfile = self.pgdata / "postmaster.pid"
        info = _Postmaster.read(pidfile)
        # postgres copes with a vanished pid in its pidfile itself (and then also checks
        # shared memory), but refuses when the pid exists: recycled by another process of
        # its user, or the killed postmaster itself left as a zombie (PID 1 in containers
        # often never reaps).
        if info is not None and pid_exists(info.pid):
            with contextlib.suppress(OSError):
                pidfile.unlink()
        socket_dirs = {self.socket_dir}
        if info is not None and info.socket_dir:
            socket_dirs.add(Path(info.socket_dir))
        for d in socket_dirs:
            for name in (f".s.PGSQL.{PG_PORT}", f".s.PGSQL.{PG_PORT}.lock"):
                with contextlib.suppress(OSError):
                    (d / name).unlink()

    def _try_candidate(
        self,
        bin_dir: Path,
        data_major: str | None,
        socket_dir: Path,
        user: pwd.struct_passwd | None,
    ) -> str | None:
        """Start with this bin dir; None on success, else why it cannot be used."""
        cand = probe(bin_dir, user, cwd=self.data_dir)
        if isinstance(cand, str):
            return cand
        if data_major is not None and cand.major != data_major:
            return (
                f"is PostgreSQL {cand.version}, but {self.pgdata} was created by "
                f"PostgreSQL {data_major}"
            )
        env = clean_env(bin_dir, user)
        initialised_here = False
        if data_major is None:
            reason = initdb(cand, env, user, self.data_dir, self.pgdata)
            if reason is not None:
                return reason
            initialised_here = True

        options = [f"-c {k}={v}" for k, v in PG_SETTINGS.items() if k != "listen_addresses"]
        # pg_ctl passes -o through /bin/sh; the socket dir only contains SAFE_PATH chars.
        options += ["-c listen_addresses=''", f"-c unix_socket_directories={socket_dir}"]
        log_offset = file_size(self.log_file)
        proc = run(
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
            terminate(info.pid, signal.SIGQUIT)
        if initialised_here:
            shutil.rmtree(self.pgdata, ignore_errors=True)
        detail = log_tail(self.log_file, log_offset) or proc.stderr or proc.stdout
        return f"pg_ctl start failed: {short(detail)}"

    def stop(self) -> None:
        info = self._postmaster()
        if info is None:
            return
        # SIGINT is exactly what `pg_ctl stop -m fast` sends; doing it directly needs no
        # binaries or user switch, and we then wait for the process itself, not just for
        # the pidfile to disappear. SIGQUIT/SIGKILL follow if it does not finish in time.
        children = children_of(info.pid)
        send_signal(info.pid, signal.SIGINT)
        if wait_gone([info.pid], 30.0):
            terminate(info.pid, signal.SIGQUIT, timeout=5.0)
        wait_gone(children, 5.0)
        socket_dir = Path(info.socket_dir) if info.socket_dir else self.socket_dir
        remove_dir_if_empty(socket_dir, self.data_dir)

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
        proc = run(cmd, user=None, env=clean_env(self.bin_dir, None), input=script)
        if proc.returncode != 0:
            raise EmbeddedServiceError(f"psql failed: {short(proc.stderr or proc.stdout)}")
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
            cand = probe(self.bin_dir, None, cwd=self.data_dir)
            self._version = cand.version if isinstance(cand, Candidate) else "?"
        pgserver_bin = pgserver_bin_dir()
        is_pgserver = pgserver_bin is not None and self.bin_dir.resolve() == pgserver_bin.resolve()
        origin = "pgserver" if is_pgserver else "system"
        return f"{origin} PostgreSQL {self._version} ({self.bin_dir})"
