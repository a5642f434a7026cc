"""refdata status --loads: the last rows of refdata.load_run."""

from __future__ import annotations

import psycopg

from ..errors import RefdataError
from .quality import table


def text(conn: psycopg.Connection, limit: int) -> str:
    try:
        rows = conn.execute(
            """SELECT id, domain, coalesce(file_name, source), rows, path, started_at,
                      round(extract(epoch FROM finished_at - started_at)::numeric, 2), foreign_keys
               FROM refdata.load_run ORDER BY id DESC LIMIT %s""", [limit]).fetchall()
    except psycopg.errors.UndefinedTable:
        raise RefdataError("refdata is not applied to this database (no refdata.load_run); run refdata apply") from None
    lines = []
    for r in rows:
        first = [r[0], r[1], r[2], r[3], r[4], r[5].strftime("%Y-%m-%d %H:%M:%S"), f"{r[6]} s"]
        fks = sorted((r[7] or {}).items()) or [("", {})]
        for name, s in fks:  # one line per foreign key, the load's own columns on the first
            lines.append(first + [name, s.get("keys_seen"), s.get("authoritative"), s.get("auto_derived"),
                                  s.get("derived_now")])
            first = [""] * len(first)
    return table(["load", "domain", "file", "rows", "path", "started", "took",
                  "foreign key", "keys", "authoritative", "auto_derived", "derived now"],
                 lines, right={0, 3, 6, 8, 9, 10, 11})
