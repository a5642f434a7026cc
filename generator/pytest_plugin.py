"""pytest plugin: test a pipeline against the real backfill.

Enters: pytest-postgresql's client fixture `postgresql` (a fresh database per
test, built from the user's own process or noproc fixture and its `load=`
files) and a refdata config (`--refdata-config` / ini `refdata_config`,
relative to the rootdir; default `config/data_sources.yml`).
Leaves: the fixture `refdata_db`, that connection with the config applied
exactly as `refdata apply` applies it, and the assertion helpers `derived`
and `pending_review`.

Registered through the `pytest11` entry point, so installing refdata into a
test environment is enough. Every test database is a copy of the same
template, so the catalog check and the rendering are done once per distinct
catalog (by fingerprint) and reused; each test then only runs the statements.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

OPTION = "refdata_config"
DEFAULT = "config/data_sources.yml"


def pytest_addoption(parser: pytest.Parser) -> None:
    help_text = f"refdata config applied by the refdata_db fixture, relative to the rootdir (default {DEFAULT})"
    parser.addini(OPTION, help=help_text, default=None)
    parser.getgroup("refdata").addoption("--refdata-config", dest=OPTION, metavar="PATH", help=help_text)


@dataclass
class _Session:
    """What the tests of one session share: checked configs and timings."""

    prepared: dict = field(default_factory=dict)  # (config path, fingerprint) -> (config, statements, report)
    checks: int = 0
    setups: list[float] = field(default_factory=list)


_SESSION = pytest.StashKey[_Session]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SESSION] = _Session()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    s = config.stash.get(_SESSION, None)
    if s is None or not s.setups:
        return
    ms = [t * 1000 for t in s.setups]
    terminalreporter.write_line(
        f"refdata: config applied to {len(ms)} test database(s); catalog checked {s.checks} time(s); "
        f"setup first {ms[0]:.0f} ms, median {statistics.median(ms):.0f} ms, last {ms[-1]:.0f} ms"
    )


def config_path(config: pytest.Config) -> Path:
    value = config.getoption(OPTION) or config.getini(OPTION) or DEFAULT
    path = Path(value)
    return path if path.is_absolute() else Path(config.rootpath) / path


@pytest.fixture
def refdata_db(request: pytest.FixtureRequest, postgresql):
    """The test's database (pytest-postgresql's `postgresql`) with the refdata config applied."""
    from .apply import apply, checked
    from .catalog import configured_tables, fingerprint
    from .config import load_config
    from .errors import RefdataError
    from .names import owner_role

    session = request.config.stash[_SESSION]
    path = config_path(request.config)
    started = time.perf_counter()
    failed = None
    try:
        # as `refdata apply` chooses it: a suite run by a role that is no
        # superuser names itself ($REFDATA_OWNER), as such a DBA does
        owner = owner_role()
        config = load_config(path)
        key = (str(path), path.stat().st_mtime_ns, owner, fingerprint(postgresql, configured_tables(config)))
        postgresql.rollback()
        if key not in session.prepared:
            with postgresql.transaction(force_rollback=True):
                session.prepared[key] = checked(postgresql, config, str(path), owner=owner)
            session.checks += 1
        apply(postgresql, config, str(path), prepared=session.prepared[key], owner=owner)
    except RefdataError as e:
        postgresql.rollback()
        failed = f"refdata: error: {e}"
    if failed:  # outside the except block: the report shows the one line, no chained exception
        pytest.fail(failed, pytrace=False)
    session.setups.append(time.perf_counter() - started)
    yield postgresql


# -- assertion helpers -----------------------------------------------------------

TRACKING_HIDDEN = ("_source", "_derived_at")  # always 'auto_derived' here; a time


def _relation(conn, table: str) -> tuple[str, str, list[str]]:
    """Schema, name and key columns of a table given as PostgreSQL writes it."""
    row = conn.execute(
        """SELECT n.nspname, c.relname,
                  ARRAY(SELECT a.attname FROM pg_catalog.pg_index AS i
                        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                        JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                        WHERE i.indrelid = c.oid AND i.indisprimary ORDER BY k.ord)::text[]
           FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
           WHERE c.oid = %s::regclass""",
        [table],
    ).fetchone()
    return row[0], row[1], row[2]


def derived(conn, table: str, columns: list[str] | None = None) -> list[dict]:
    """The auto-derived rows of a reference table, as dicts, in key order.

    `table` as PostgreSQL writes it (`'mapping."年金计划"'`). Each dict holds
    the table's columns and `_needs_review` and `_derived_from_domain`
    (`_source` is 'auto_derived' for all of them and `_derived_at` is a time,
    so both are left out), or only `columns` when given.
    """
    from psycopg.rows import dict_row

    from .names import ident, qualified

    schema, name, key = _relation(conn, table)
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(
        f"SELECT * FROM {qualified(schema, name)} AS t WHERE t.\"_source\" = 'auto_derived' "
        f"ORDER BY {', '.join(ident(k) for k in key) or 't'}"
    ).fetchall()
    keep = columns or [c for c in (rows[0] if rows else {}) if c not in TRACKING_HIDDEN]
    return [{c: r[c] for c in keep} for r in rows]


def pending_review(conn) -> dict[str, int]:
    """Rows awaiting review per reference table (`schema.table`), tables with none left out."""
    from .names import qualified

    tables = conn.execute(
        """SELECT n.nspname, c.relname FROM pg_catalog.pg_attribute AS a
           JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
           JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
           WHERE a.attname = '_needs_review' AND NOT a.attisdropped
             AND c.relkind IN ('r', 'p') AND NOT c.relispartition
           ORDER BY 1, 2"""
    ).fetchall()
    counts = {}
    for schema, name in tables:
        n = conn.execute(f'SELECT count(*) FROM {qualified(schema, name)} WHERE "_needs_review"').fetchone()[0]
        if n:
            counts[f"{schema}.{name}"] = n
    return counts
