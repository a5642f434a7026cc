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
        fks = "; ".join(
            f"{name}: {s['keys_seen']} keys, {s['authoritative']} authoritative, {s['auto_derived']} auto-derived, "
            f"{s['derived_now']} derived now" for name, s in sorted((r[7] or {}).items()))
        lines.append([r[0], r[1], r[2], r[3], r[4], r[5].strftime("%Y-%m-%d %H:%M:%S"), f"{r[6]} s", fks])
    return table(["load", "domain", "file", "rows", "path", "started", "took", "per foreign key"], lines, right={0, 3, 6})
