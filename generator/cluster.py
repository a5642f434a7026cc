"""The embedded default: a private PostgreSQL cluster under `.refdata/`.

Started once with the machine's PostgreSQL binaries and reached only through
a Unix socket in that folder. PostgreSQL refuses to run as root, so as root
the server runs as the `postgres` system user.
"""

from __future__ import annotations

import fcntl
import hashlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from .errors import RefdataError
from .names import ident

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATABASE = "refdata"
SUPERUSER = "postgres"


def default_home() -> Path:
    return Path(os.environ.get("REFDATA_HOME") or PROJECT_ROOT / ".refdata")


def postgres_bindir() -> Path:
    """Newest installed PostgreSQL server binaries (Debian keeps them off PATH)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name)
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RefdataError(
        "PostgreSQL server binaries not found (initdb); install them: apt-get install postgresql-15 postgresql-contrib"
    )


def _reachable_by(user: str, path: Path) -> bool:
    """Whether `user` can get to `path` (each existing ancestor searchable)."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return False
    probe = path
    while not probe.exists():
        probe = probe.parent
    return subprocess.run(["runuser", "-u", pw.pw_name, "--", "test", "-x", str(probe)],
                          capture_output=True).returncode == 0


class Cluster:
    def __init__(self, home: Path | None = None):
        self.home = (home or default_home()).resolve()
        base = self._server_base()
        self.data = base / "pgdata"
        self.socket_dir = base / "run"
        self.log = base / "server.log"

    def _server_base(self) -> Path:
        """Where the server's files go: the home folder, unless the server's
        user could not reach it (as root, a checkout under /root); then a
        folder of its own under /tmp, named after the home so it is found again."""
        if os.geteuid() != 0 or _reachable_by(SUPERUSER, self.home):
            return self.home
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"refdata-{digest}"

    # -- running as someone PostgreSQL accepts -------------------------------

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(postgres_bindir() / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        proc = subprocess.run(cmd, cwd=self.data.parent, capture_output=True, text=True)
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise RefdataError(f"{args[0]} failed for cluster {self.data}: {detail[-1] if detail else proc.returncode}")
        return proc

    @contextmanager
    def _lock(self):
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    # -- life cycle ------------------------------------------------------------

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialized():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def start(self) -> bool:
        """Start the cluster (creating it first if needed); False if it already ran."""
        with self._lock():
            if self.running():
                if self._configure_cron():
                    self._run("pg_ctl", "restart", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                              "-m", "fast")
                    self._create_database()
                return False
            if not self.initialized():
                self._init()
            self._configure_cron()
            self._run(
                "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                "-o", f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}'",
            )
            self._create_database()
            return True

    def stop(self) -> bool:
        with self._lock():
            if not self.running():
                return False
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
            return True

    def _init(self) -> None:
        if self._as_root:
            try:
                pw = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise RefdataError(
                    f"running as root needs the '{SUPERUSER}' system user to own the embedded cluster "
                    "(it comes with the postgresql-15 package)"
                ) from None
        own = [self.data, self.socket_dir] + ([self.data.parent] if self.data.parent != self.home else [])
        for d in (self.data.parent, self.data, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
            if self._as_root and d in own:
                os.chown(d, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data, 0o700)
        if self._as_root:
            self.log.touch()
            os.chown(self.log, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--locale=C.UTF-8",
        )
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            # A private development cluster: socket only, and small.
            conf.write(
                "\n# refdata embedded cluster\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "unix_socket_permissions = 0700\n"
                "max_connections = 50\n"
                "shared_buffers = 256MB\n"
                "max_wal_size = 2GB\n"
            )

    def _configure_cron(self) -> bool:
        """Load pg_cron (when installed) so `refdata schedule` works here;
        True when the config changed. Clusters made before get it appended.
        Its jobs connect back through the socket folder, hence cron.host."""
        conf = self.data / "postgresql.conf"
        if not (postgres_bindir().parent / "lib" / "pg_cron.so").exists():
            return False
        text = conf.read_text(encoding="utf-8")
        if "# refdata pg_cron" in text:
            return False
        with open(conf, "a", encoding="utf-8") as f:
            f.write(
                "\n# refdata pg_cron\n"
                "shared_preload_libraries = 'pg_cron'\n"
                f"cron.database_name = '{DATABASE}'\n"
                f"cron.host = '{self.socket_dir}'\n"
            )
        return True

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            # SELECT 1, not SELECT: a row with no columns is the empty tuple, which is false.
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
                conn.execute(f"CREATE DATABASE {ident(DATABASE)}")

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@/{quote(database)}?host={quote(str(self.socket_dir), safe='/')}"
