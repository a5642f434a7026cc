"""refdata status and refdata check: the views as terminal tables, and the
thresholds of the config's `observability` section held against them."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from decimal import Decimal

import psycopg

from ..config import Config
from ..errors import RefdataError
from ..names import printable

COVERAGE_GOAL = 0.9


@dataclass
class Breach:
    table: str
    measure: str
    value: float
    limit: float
    detail: str

    def line(self) -> str:
        if self.measure == "auto_derived_ratio":
            return (f"{self.table}: auto_derived_ratio {self.value:.2%} > {self.limit:.2%} ({self.detail})")
        return f"{self.table}: pending_review {int(self.value)} > {int(self.limit)} ({self.detail})"


def _query(conn: psycopg.Connection, sql: str, params=None) -> list[tuple]:
    try:
        return conn.execute(sql, params).fetchall()
    except psycopg.errors.UndefinedTable:
        raise RefdataError("refdata is not applied to this database (no refdata views); run refdata apply") from None


def quality(conn: psycopg.Connection) -> list[tuple]:
    """(schema, table, label, total, authoritative, auto_derived, pending, ratio, oldest pending, domains)."""
    return _query(conn, """
        SELECT n.nspname::text, c.relname::text, n.nspname || '.' || c.relname, q.total_rows, q.authoritative,
               q.auto_derived, q.pending_review, coalesce(q.auto_derived_ratio, 0), q.oldest_pending,
               q.derived_by_domains
        FROM refdata.reference_quality AS q
        JOIN pg_catalog.pg_class AS c ON c.oid = q.reference_table
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        ORDER BY 3""")


def coverage(conn: psycopg.Connection) -> list[tuple]:
    """(domain, fk, reference table, keys used, authoritative, auto-derived, missing, authoritative share)."""
    return _query(conn, """
        SELECT v.domain, v.foreign_key, n.nspname || '.' || c.relname, v.keys_used, v.authoritative,
               v.auto_derived, v.missing, v.authoritative_share
        FROM refdata.fk_coverage AS v
        JOIN pg_catalog.pg_class AS c ON c.oid = v.reference_table
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        ORDER BY 1, 2""")


def activity(conn: psycopg.Connection) -> list[tuple]:
    """(day, reference table, domain, derived) oldest first."""
    return _query(conn, """
        SELECT a.day, n.nspname || '.' || c.relname, coalesce(a.domain, ''), a.derived
        FROM refdata.derivation_activity AS a
        JOIN pg_catalog.pg_class AS c ON c.oid = a.reference_table
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        ORDER BY 1, 2, 3""")


def unreferenced(conn: psycopg.Connection) -> list[tuple]:
    """(reference table, rows) of rows awaiting review that no fact row names:
    parents derived for a row that was then not inserted (row mode and INSERT
    ... ON CONFLICT DO NOTHING), or whose facts were deleted since."""
    return _query(conn, """
        SELECT n.nspname || '.' || c.relname, count(*)
        FROM refdata.pending_review AS v
        JOIN pg_catalog.pg_class AS c ON c.oid = v.reference_table
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE v.fact_rows = 0
        GROUP BY 1 ORDER BY 1""")


def breaches(config: Config, rows: list[tuple]) -> list[Breach]:
    out = []
    for schema, table, label, total, _auth, derived, pending, ratio, *_ in rows:
        limits = config.observability.thresholds_for(schema, table)
        if float(ratio) > limits.auto_derived_ratio:
            out.append(Breach(label, "auto_derived_ratio", float(ratio), limits.auto_derived_ratio,
                              f"{derived} of {total} rows auto-derived"))
        if pending > limits.pending_review:
            out.append(Breach(label, "pending_review", pending, limits.pending_review, f"{pending} rows await review"))
    return out


def table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> str:
    """A plain-text table; widths count East Asian characters as two columns."""
    def width(s: str) -> int:
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)

    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([width(h)] + [width(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values):
        parts = []
        for i, v in enumerate(values):
            pad = " " * (widths[i] - width(v))
            parts.append(pad + v if i in right else v + pad)
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _cell(v) -> str:
    """A value as its cell shows it; text (names, a load's file name as its
    client gave it) with its control characters escaped, so that it can
    neither break the table nor drive the reader's terminal."""
    if v is None:
        return ""
    if isinstance(v, (Decimal, float)):
        return f"{float(v):.1%}"
    if isinstance(v, list):
        return printable(", ".join(str(x) for x in v))
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d %H:%M")
    return printable(str(v))


def status_text(conn: psycopg.Connection) -> str:
    q = quality(conn)
    c = coverage(conn)
    parts = [
        "reference tables",
        table(["table", "rows", "authoritative", "auto_derived", "pending", "ratio", "oldest pending", "domains"],
              [[r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9]] for r in q], right={1, 2, 3, 4, 5}),
        "",
        f"coverage of the keys facts use (goal: authoritative above {COVERAGE_GOAL:.0%})",
        table(["domain", "foreign key", "reference table", "keys", "authoritative", "auto_derived", "missing", "covered"],
              [[r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]] for r in c], right={3, 4, 5, 6, 7}),
    ]
    return "\n".join(parts)
