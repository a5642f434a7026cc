"""Connection settings of a sync source, from the environment.

Enters: a `connection_env_prefix` (say WDH_LEGACY) and the environment:
PREFIX_URL, or PREFIX_HOST, _PORT, _DATABASE, _USER, _PASSWORD. Leaves: a
`Connection` whose password is only handed to drivers and bound parameters,
never part of its repr or of a message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..errors import RefdataError
from ..render import FromEnv

DEFAULT_PORT = {"postgres": 5432, "legacy_mysql": 3306}


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

    def env(self, what: str) -> FromEnv:
        """One setting as a value apply binds and a rendered script reads with \\getenv."""
        value = {"host": self.host, "port": str(self.port), "database": self.database,
                 "user": self.user, "password": self.password}[what]
        return FromEnv(f"{self.prefix}_{what.upper()}", value)

    def scrub(self, text: str) -> str:
        """A message fit to show: the password, should a driver echo it, masked."""
        return text.replace(self.password, "***") if self.password else text

    def label(self) -> str:
        return f"{self.user or ''}@{self.host}:{self.port}/{self.database or ''}"


def connection(prefix: str, kind: str, env=None) -> Connection:
    """The settings PREFIX_* give; RefdataError naming the variable that is missing."""
    env = os.environ if env is None else env
    url = env.get(f"{prefix}_URL")
    if url:
        parts = urlsplit(url)
        if not parts.hostname:
            raise RefdataError(f"{prefix}_URL names no host")
        return Connection(
            prefix, kind, parts.hostname, parts.port or DEFAULT_PORT[kind],
            unquote(parts.path.lstrip("/")) or None,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            from_url=True,
        )
    host = env.get(f"{prefix}_HOST")
    if not host:
        raise RefdataError(f"{prefix}_HOST is not set (nor {prefix}_URL)")
    port = env.get(f"{prefix}_PORT") or str(DEFAULT_PORT[kind])
    if not port.isdigit():
        raise RefdataError(f"{prefix}_PORT is not a port number")
    return Connection(prefix, kind, host, int(port), env.get(f"{prefix}_DATABASE") or None,
                      env.get(f"{prefix}_USER") or None, env.get(f"{prefix}_PASSWORD") or None)
