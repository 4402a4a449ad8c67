"""A real PostgreSQL server for tests, from the distribution's package, on a loopback port.

``PostgresServer`` finds the server binaries under ``/usr/lib/postgresql/<version>/bin`` (Debian's
layout; the newest version wins). When they are missing it installs Debian's ``postgresql``
package (``apt-get update`` then ``apt-get install``), which needs root; without root the
harness fails and says what to install, rather than skipping the tests.

Each session gets a throwaway cluster: ``initdb`` into a temporary directory (trust
authentication, owned by the ``postgres`` system user when the tests run as root, since the
server refuses to run as root), then ``postgres`` listening on 127.0.0.1 at a free port and on a
Unix socket in the same directory, with durability switched off (``fsync``,
``synchronous_commit``, ``full_page_writes``) because nothing has to survive the session. The
server is its own process group and dies with the test process; ``stop`` (fast shutdown, then
SIGKILL) checks that no process of that group is left, and removes the directory.

Fixtures: ``postgres_server`` (the server, per session), ``postgres_dsn`` (its maintenance
database, per session) and ``postgres_database`` (a new, empty database per test, dropped after
it, so tests never see each other's rows). ``preinstall_postgres`` installs the package before the
first test runs, outside per-test timeouts; re-export it from a conftest as
``pytest_collection_finish``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.spawn import as_account, dying_with_parent

log = logging.getLogger(__name__)

LIB_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
SUPERUSER = "postgres"
_STARTUP_TIMEOUT_S = 60.0
_STOP_GRACE_S = 15.0


class PostgresHarnessError(RuntimeError):
    """PostgreSQL could not be installed, started or stopped cleanly."""


def find_bin_dir(lib_root: Path = LIB_ROOT) -> Path | None:
    """The ``bin`` directory of the newest installed server version, or ``None``."""
    found = [
        path.parent
        for path in lib_root.glob("*/bin/postgres")
        if (path.parent / "initdb").exists() and path.parent.parent.name.isdigit()
    ]
    return max(found, key=lambda p: int(p.parent.name)) if found else None


def install_server(lib_root: Path = LIB_ROOT) -> Path:
    """Install Debian's ``postgresql`` package (root only) and return its ``bin`` directory."""
    if os.geteuid() != 0:
        raise PostgresHarnessError(
            f"no PostgreSQL server binaries under {lib_root}/*/bin, and the tests are not "
            "running as root, so they cannot install them: run "
            "`apt-get install -y --no-install-recommends postgresql` as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostgresHarnessError(
                f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr[-2000:]}"
            )
    bin_dir = find_bin_dir(lib_root)
    if bin_dir is None:
        raise PostgresHarnessError(f"installed postgresql, yet no server under {lib_root}/*/bin")
    return bin_dir


def ensure_server_binaries(lib_root: Path = LIB_ROOT) -> tuple[Path, float | None]:
    """The server's ``bin`` directory, installing it first if needed.

    Returns it with the seconds the install took (``None`` when it was already there).
    """
    bin_dir = find_bin_dir(lib_root)
    if bin_dir is not None:
        return bin_dir, None
    began = time.monotonic()
    bin_dir = install_server(lib_root)
    took = time.monotonic() - began
    log.info("installed PostgreSQL in %.1f s", took, extra={"bin_dir": str(bin_dir)})
    return bin_dir, took


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_account() -> pwd.struct_passwd | None:
    """The account the server runs as: ``postgres`` (created if missing) when root, else us."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", SERVER_USER],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(SERVER_USER)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
            members.append(int(entry.name))
    return members


class PostgresServer:
    """One throwaway PostgreSQL cluster under ``workdir``; ``start`` it, then ``stop`` it."""

    def __init__(self, bin_dir: Path, workdir: Path) -> None:
        self.bin_dir = bin_dir
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.socket_dir = workdir / "socket"
        self.log_path = workdir / "server.log"
        self.port = 0
        self.timings: dict[str, float] = {}
        self._account = _server_account()
        self._proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)

    @property
    def version(self) -> str:
        """The server's major version (the directory name under ``/usr/lib/postgresql``)."""
        return self.bin_dir.parent.name

    def dsn(self, dbname: str = "postgres") -> str:
        """A URL for ``dbname`` as the superuser, over TCP on loopback."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """initdb, start the server and wait until it accepts connections."""
        began = time.monotonic()
        try:
            self.socket_dir.mkdir(parents=True)
            if self._account is not None:
                for path in (self.workdir, self.socket_dir):
                    os.chown(path, self._account.pw_uid, self._account.pw_gid)
            self._run_as_server(
                [
                    str(self.bin_dir / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )  # fmt: skip
            self.timings["initdb"] = time.monotonic() - began
            for attempt in range(3):
                self.port = free_port()
                if self._launch_and_wait():
                    break
                if attempt == 2:
                    raise PostgresHarnessError(f"the server would not start; see {self.log_path}")
            self.timings["start"] = time.monotonic() - began
        except BaseException:
            self.stop()
            raise
        log.info("PostgreSQL ready", extra={"dsn": self.dsn(), "timings": self.timings})

    def _run_as_server(self, argv: list[str]) -> None:
        command = argv
        if self._account is not None:  # setpriv, not user=: see tests/support/spawn.py
            command = as_account(argv, self._account.pw_uid, self._account.pw_gid)
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, cwd=self.workdir
        )
        if done.returncode != 0:
            raise PostgresHarnessError(
                f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr[-2000:]}"
            )

    def _launch_and_wait(self) -> bool:
        """Start the server on ``self.port``; False if it exited (port taken), else ready."""
        argv = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-k", str(self.socket_dir),
            "-h", "127.0.0.1",
            "-p", str(self.port),
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip
        with self.log_path.open("ab") as log_file:
            command = dying_with_parent(argv)
            if self._account is not None:
                command = as_account(command, self._account.pw_uid, self._account.pw_gid)
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2, autocommit=True):
                    return True
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresHarnessError(
                        f"the server did not accept connections within {_STARTUP_TIMEOUT_S:.0f} s"
                        f" ({exc}); see {self.log_path}"
                    ) from exc
            time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), SIGKILL after a grace period; raise if a process is left.

        The working directory is removed either way.
        """
        proc, self._proc = self._proc, None
        left: list[int] = []
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("SIGKILL after %.0f s", _STOP_GRACE_S, extra={"pid": proc.pid})
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            left = _group_members(proc.pid)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if left:
            raise PostgresHarnessError(f"server processes left after stop (now killed): {left}")

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases ------------------------------------------------------------------------

    def create_database(self) -> str:
        """A new, empty database; returns its DSN."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        """Drop a database made by :meth:`create_database`, ending sessions still on it."""
        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
            )

    def backends(self, dsn: str) -> int:
        """How many sessions are connected to the database of ``dsn``."""
        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (str(name),)
            ).fetchone()
        return int(row[0]) if row else 0


def _wants_postgres(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    if any(n in names for n in ("postgres_server", "postgres_dsn", "postgres_database")):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "postgresql" in callspec.params.values()


def preinstall_postgres(session: pytest.Session) -> None:
    """Install the server before the first test that needs it runs (no-op when present).

    Re-export it from a conftest as ``pytest_collection_finish``.
    """
    if find_bin_dir() is not None or not any(_wants_postgres(i) for i in session.items):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        ensure_server_binaries()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (installed first if missing)."""
    bin_dir, install_s = ensure_server_binaries()
    server = PostgresServer(bin_dir, Path(tempfile.mkdtemp(prefix="backstop-pg-")))
    if install_s is not None:
        server.timings["install"] = install_s
    with server:
        yield server


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of the session server's maintenance database (``postgres``)."""
    return postgres_server.dsn()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """The DSN of a new, empty database, dropped after the test."""
    dsn = postgres_server.create_database()
    yield dsn
    postgres_server.drop_database(dsn)
