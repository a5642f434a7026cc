"""Connection settings of a sync source, from the environment.

Enters: a `connection_env_prefix` (say WDH_LEGACY) and the environment:
PREFIX_URL, or PREFIX_HOST, _PORT, _DATABASE, _USER, _PASSWORD. Leaves: a
`Connection` whose password is only handed to drivers and bound parameters,
never part of its repr or of a message.

A PostgreSQL URL is read by libpq's own grammar (a socket directory as
percent-encoded host or `?host=`, `?sslmode=require` and the other libpq
parameters, which both paths then use). A MySQL URL takes no query
parameters: refused rather than ignored, so a setting such as TLS is never
silently dropped. A malformed URL is refused naming the variable only: a
password with an unescaped `/`, `#` or `?` ends the URL's host part early,
and whatever text a parser would quote back may be part of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..errors import InputError, RefdataError
from ..render import FromEnv

DEFAULT_PORT = {"postgres": 5432, "legacy_mysql": 3306}
SCHEMES = {"postgres": ("postgresql", "postgres"), "legacy_mysql": ("mysql", "mariadb")}
ESCAPE_HINT = "percent-encode @ : / ? # in the user name and password"
# libpq parameters that are secrets: a foreign server's options are readable
# by every role, so they are not taken from a URL.
SECRET_PARAMETERS = ("sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key")


class NotConfigured(RefdataError):
    """The environment names no connection for the prefix (apply leaves the
    foreign table out and says so; a sync of that table fails)."""


@dataclass(frozen=True)
class Connection:
    prefix: str
    kind: str  # postgres | legacy_mysql
    host: str
    port: int
    database: str | None
    user: str | None
    password: str | None = field(default=None, repr=False)
    from_url: bool = False
    # libpq parameters of a PostgreSQL URL besides the above (sslmode, ...)
    options: tuple[tuple[str, str], ...] = ()

    def env(self, what: str) -> FromEnv:
        """One setting as a value apply binds and a rendered script reads with \\getenv."""
        value = {"host": self.host, "port": str(self.port), "database": self.database,
                 "user": self.user, "password": self.password}[what]
        return FromEnv(f"{self.prefix}_{what.upper()}", value, secret=what == "password")

    def scrub(self, text: str) -> str:
        """A message fit to show: the password, should a driver echo it, masked."""
        return text.replace(self.password, "***") if self.password else text

    def label(self) -> str:
        return f"{self.user or ''}@{self.host}:{self.port}/{self.database or ''}"


def _port(var: str, value: str | None, kind: str) -> int:
    if not value:
        return DEFAULT_PORT[kind]
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 65535:
        hint = f" ({ESCAPE_HINT})" if var.endswith("_URL") else ""
        raise InputError(f"{var}: the port is not a number from 1 to 65535{hint}")
    return int(value)


def _from_url(prefix: str, kind: str, url: str) -> Connection:
    var = f"{prefix}_URL"
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES[kind]:
        raise InputError(f"{var}: not a {' or '.join(s + '://' for s in SCHEMES[kind])} URL "
                         f"(the source_type is {kind})")
    rest = url.split("://", 1)[1]
    netloc_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    if "@" in rest[netloc_end:]:
        # an unescaped / ? # in the password ended the host part before its @
        raise InputError(f"{var}: an @ after the host part ({ESCAPE_HINT})")
    if kind == "postgres":
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
        except ProgrammingError:
            # libpq's message quotes the part it could not read
            raise InputError(f"{var}: not a valid PostgreSQL URL ({ESCAPE_HINT})") from None
        host, port = params.pop("host", None), params.pop("port", None)
        database, user, password = params.pop("dbname", None), params.pop("user", None), params.pop("password", None)
        for secret in SECRET_PARAMETERS:
            if secret in params:
                raise InputError(f"{var}: ?{secret}= is not taken from a URL (a foreign server's options "
                                 "are readable by every role)")
        options = tuple(sorted(params.items()))
    else:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise InputError(f"{var}: the port is not a number from 1 to 65535 ({ESCAPE_HINT})") from None
        if parts.query or parts.fragment:
            raise InputError(f"{var}: a MySQL URL takes no ?parameters ({ESCAPE_HINT})")
        host = parts.hostname
        port = str(port) if port is not None else None
        database = unquote(parts.path.lstrip("/")) or None
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        options = ()
    if not host:
        raise InputError(f"{var} names no host")
    return Connection(prefix, kind, host, _port(var, port, kind), database or None, user or None,
                      password or None, from_url=True, options=options)


def connection(prefix: str, kind: str, env=None) -> Connection:
    """The settings PREFIX_* give. NotConfigured naming the variable that is
    missing; InputError naming the one that is malformed."""
    env = os.environ if env is None else env
    url = env.get(f"{prefix}_URL")
    if url:
        return _from_url(prefix, kind, url)
    host = env.get(f"{prefix}_HOST")
    if not host:
        raise NotConfigured(f"{prefix}_HOST is not set (nor {prefix}_URL)")
    return Connection(prefix, kind, host, _port(f"{prefix}_PORT", env.get(f"{prefix}_PORT"), kind),
                      env.get(f"{prefix}_DATABASE") or None,
                      env.get(f"{prefix}_USER") or None, env.get(f"{prefix}_PASSWORD") or None)


def server_options(conn: Connection, for_script: bool = False) -> dict:
    """A server's options besides host, port and dbname, as apply sets them.
    PostgreSQL: the URL's libpq parameters, and every other one NULL, so one
    the URL no longer gives is dropped (a script, which reads no URL, leaves
    them). MySQL: the connection in utf8mb4; mysql_fdw otherwise asks for
    MySQL's three-byte utf8 and reads an emoji as '?'."""
    if conn.kind != "postgres":
        return {"init_command": "SET NAMES utf8mb4"}
    if for_script:
        return {}
    from psycopg.pq import Conninfo

    fixed = ("host", "port", "dbname", "user", "password")
    managed = {d.keyword.decode(): None for d in Conninfo.get_defaults() if d.keyword.decode() not in fixed}
    return {**managed, **dict(conn.options)}
