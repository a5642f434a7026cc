"""bin/refdata: the command line over config, rendering, applying and the demo.

Exit codes: 0 success, 2 invalid input (config, arguments, data file), 1 any
other failure; `plan` exits 3 when changes are pending. Errors are one line
per problem; --debug adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

import psycopg

from . import __doc__ as package_doc
from .errors import InputError, RefdataError, cannot_write
from .names import printable


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        command = self.prog.removeprefix("refdata").strip()
        raise InputError(f"{command}: {message}" if command else message)


def _global_options(parser: argparse.ArgumentParser, default) -> None:
    """--config, --db and --debug, accepted before or after the command.

    The subcommands declare them with SUPPRESS as default, so a value given
    before the command is not overwritten by the subcommand's default."""
    g = parser.add_argument_group("global options (before or after the command)")
    g.add_argument("--config", metavar="PATH", default=default,
                   help="config file: data_sources.yml, or foreign_keys.yml (the other is read from beside it; "
                        "default: $REFDATA_CONFIG, then config/data_sources.yml)")
    g.add_argument("--db", metavar="DSN", default=default,
                   help="database (default: $REFDATA_DB, $DATABASE_URL, then the embedded cluster)")
    g.add_argument("--debug", action="store_true", default=default if default is argparse.SUPPRESS else False,
                   help="show tracebacks")


class _Subcommands(argparse._SubParsersAction):
    def add_parser(self, name, **kwargs):
        kwargs.setdefault("description", kwargs.get("help"))
        parser = super().add_parser(name, **kwargs)
        _global_options(parser, argparse.SUPPRESS)
        return parser


def _count(text: str) -> int:
    """A number of rows to show: 0 up to what a LIMIT takes."""
    if not text.isdigit() or int(text) > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 up, not {text!r}")
    return int(text)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?")
_MILLISECONDS = {"us": 0.001, "ms": 1, None: 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def _duration(text: str) -> str:
    """A lock timeout as PostgreSQL's lock_timeout reads it (5s, 500ms, 2min;
    a number alone is milliseconds, 0 waits for ever), refused here rather
    than by the server halfway through the command."""
    m = _DURATION.fullmatch(text.strip())
    if not m or float(m.group(1)) * _MILLISECONDS[m.group(2)] > 2**31 - 1:
        raise argparse.ArgumentTypeError(f"must be a duration such as 5s, 500ms or 2min (at most 24 days), "
                                          f"not {text!r}")
    return text.strip()


SYNC_CONFIG_HELP = "sync config (default: $REFDATA_SYNC_CONFIG, then reference_sync.yml beside the config)"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="refdata", description=package_doc)
    _global_options(p, None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=ArgumentParser,
                           action=_Subcommands)

    v = sub.add_parser("validate", help="check the config (and the catalog, when a database is named); print the processing order")
    v.add_argument("--sync-config", metavar="PATH", help=SYNC_CONFIG_HELP)
    r = sub.add_parser("render", help="write the SQL in apply order (stdout, or one file per object with -o)")
    r.add_argument("-o", "--output", metavar="DIR", help="directory for numbered .sql files and apply.sql")
    r.add_argument("--sync-config", metavar="PATH", help=SYNC_CONFIG_HELP)
    r.add_argument("--grants", action="store_true",
                   help="print the role model instead: the owner role, its rights, what writers and loaders need")
    pl = sub.add_parser("plan", help="print the SQL that brings the database to the config (exit 0: none, 3: changes pending)")
    ap = sub.add_parser("apply", help="check against the catalog, plan, and run the plan in one transaction")
    for sp in (pl, ap):
        sp.add_argument("--sync-config", metavar="PATH", help=SYNC_CONFIG_HELP)
        sp.add_argument("--scratch-db", metavar="DSN",
                        help="an empty database to build the desired state in (default: a temporary one)")
        sp.add_argument("--lock-timeout", metavar="T", type=_duration,
                        help="give up when a lock is not granted within T (default 5s)")
    for parser in (r, pl, ap):
        parser.add_argument("--owner", metavar="ROLE",
                            help="role owning the generated functions (default: $REFDATA_OWNER, then refdata_owner); "
                                 "NOLOGIN, never a superuser; created when missing")
    ap.add_argument("--sql", metavar="FILE", help="apply a reviewed plan file; refused if the database changed since")
    ap.add_argument("--allow-drop", action="store_true", help="allow steps that drop tables or columns holding data")
    un = sub.add_parser("uninstall", help="remove what refdata created (for the named domains, or all), in one transaction")
    un.add_argument("domains", nargs="*", metavar="DOMAIN")
    un.add_argument("--drop-tracking-columns", action="store_true",
                    help="drop the tracking columns too (derived rows stay, as ordinary rows)")
    un.add_argument("--lock-timeout", metavar="T", type=_duration, help="give up when a lock is not granted within T (default 5s)")
    ld = sub.add_parser("load", help="load a CSV file of fact rows through the staging table, deriving missing parents set-based")
    ld.add_argument("domain", metavar="DOMAIN")
    ld.add_argument("file", metavar="FILE")
    ld.add_argument("--delimiter", default=",", help="field delimiter (default ,)")
    ld.add_argument("--encoding", default="utf-8", help="file encoding, e.g. gbk for Excel exports (default utf-8)")
    ld.add_argument("--null", default="", metavar="MARKER", help="field value read as NULL (default: empty)")
    ld.add_argument("--rejects", metavar="FILE", help="write bad rows with their reason here and load the rest")
    ld.add_argument("--verify", choices=["auto", "set-based", "per-row"],
                    help="how the fact table's foreign keys are checked (default: the domain's verify, else auto)")
    ld.add_argument("--force", action="store_true", help="load a file again that this domain has loaded before")
    sy = sub.add_parser("sync", help="sync authoritative reference data from the sources of reference_sync.yml")
    sy.add_argument("tables", nargs="*", metavar="TABLE", help="names of tables in the sync config (default: all)")
    sy.add_argument("--via", choices=["fdw", "client"], help="only the tables of this path")
    sy.add_argument("--sync-config", metavar="PATH", help=SYNC_CONFIG_HELP)
    sc = sub.add_parser("schedule", help="create, update or remove the pg_cron job of the sync; print a crontab line and systemd timer for client tables")
    sc.add_argument("--cron", metavar="EXPR", help="cron expression (default: the sync config's schedule)")
    sc.add_argument("--remove", action="store_true", help="remove the pg_cron job")
    sc.add_argument("--sync-config", metavar="PATH", help=SYNC_CONFIG_HELP)
    it = sub.add_parser("init", help="write a starting config from the FOREIGN KEYs a fact table declares "
                        "(stdout, or -o FILE)")
    it.add_argument("--fact", required=True, metavar="TABLE",
                    help="the fact table as PostgreSQL writes its name, e.g. 'business.\"规模明细\"'")
    it.add_argument("--domain", metavar="NAME", help="the domain's name (default: the table's)")
    it.add_argument("-o", "--output", metavar="FILE", help="write here (refused if it exists)")
    nm = sub.add_parser("names", help="list the names apply gives what it creates (load function, staging table, "
                        "triggers, ...) as SQL writes them, for GRANTs and psql; needs no database")
    nm.add_argument("domain", metavar="DOMAIN", nargs="?", help="only this domain")
    sub.add_parser("demo", help="build the sample schema in a fresh database refdata_demo (on the embedded cluster "
                   "unless --db is given; $REFDATA_DB, $DATABASE_URL and $REFDATA_CONFIG are not used), apply the "
                   "project's config, insert facts, show counts")
    st = sub.add_parser("status", help="print the quality and coverage of the reference tables")
    st.add_argument("--loads", nargs="?", type=_count, const=20, metavar="N", help="show the last N loads instead (default 20)")
    sub.add_parser("check", help="hold the reference tables against the configured thresholds: one line per breach, exit 1 when any")
    rp = sub.add_parser("report", help="write a self-contained HTML page of quality, coverage, derivation activity and breaches")
    rp.add_argument("-o", "--output", metavar="FILE", required=True, help="the HTML file to write")
    ex = sub.add_parser("export-pending", help="write the rows awaiting review, with every column of their table, to a CSV file")
    ex.add_argument("--table", metavar="T", help="only this reference table (schema.table)")
    ex.add_argument("-o", "--output", metavar="FILE", required=True, help="the CSV file to write")
    ex.add_argument("--excel", action="store_true", help="start the file with a UTF-8 byte order mark, for Excel")
    rv = sub.add_parser("review", help="review rows awaiting it: import an edited export, approve rows, merge a wrong key into the right one")
    rsub = rv.add_subparsers(dest="review_command", required=True, metavar="ACTION", parser_class=ArgumentParser)
    ri = rsub.add_parser("import", help="update the rows of an edited export-pending file and mark them reviewed (all or nothing)")
    ri.add_argument("file", metavar="FILE")
    ra = rsub.add_parser("approve", help="mark rows reviewed as they are")
    ra.add_argument("table", metavar="TABLE")
    ra.add_argument("keys", metavar="KEY", nargs="+", help="key value (a JSON object for composite keys)")
    rm = rsub.add_parser("merge", help="re-point every fact row from WRONG_KEY to RIGHT_KEY, then delete WRONG_KEY")
    rm.add_argument("table", metavar="TABLE")
    rm.add_argument("wrong", metavar="WRONG_KEY")
    rm.add_argument("right", metavar="RIGHT_KEY")
    db = sub.add_parser("db", help="manage the embedded default cluster under .refdata/")
    db.add_argument("action", choices=["start", "stop", "status", "url"])
    return p


def main(argv: list[str] | None = None) -> int:
    # psycopg logs what it cannot report otherwise (a COPY cut short by a lost
    # connection); the error that follows says it in one line already.
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    parser = build_parser()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    terminated = _stop_on_sigterm()
    try:
        args = parser.parse_args(argv)
        code = COMMANDS[args.command](args)
        _write("")  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _reader_gone()
        return 0
    except RefdataError as e:
        if debug:
            raise
        _error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        print("refdata: interrupted", file=sys.stderr)
        return 1
    except psycopg.Error as e:  # what no command turned into a line of its own
        if debug:
            raise
        from .db import database_error

        _error(database_error(e))
        return 1
    except Exception as e:  # anything unexpected is still one line without --debug
        if debug:
            raise
        _error(f"{type(e).__name__}: {e} (run with --debug for the traceback)")
        return 1
    finally:
        if terminated is not None:
            signal.signal(signal.SIGTERM, terminated)


def _stop_on_sigterm():
    """SIGTERM (timeout(1), a cancelled CI job, systemd) stops a command as
    Ctrl-C does, so its clean-up runs: a plan drops its scratch database,
    which the server would otherwise keep. Only the main thread may set a
    handler; returns the previous one, to put back."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _error(message: str) -> None:
    """Each line of an error as `refdata: error: ...`. Errors quote values of
    files and tables that anyone may have written: their control characters
    (an escape sequence would drive the reader's terminal, a carriage return
    overwrite the line) are shown escaped."""
    for line in message.split("\n"):
        print(f"refdata: error: {printable(line)}", file=sys.stderr)


def _reader_gone() -> None:
    """The reader stopped early (| head -1, less, grep -q): its choice, not a
    failure; what is still to be written goes nowhere."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _write(text: str) -> None:
    """Output of a command whose exit code answers a question (plan: changes
    pending, check: a breach): a reader that stops early must not change it."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_gone()


# -- commands -----------------------------------------------------------------


def _config(args):
    from .config import load_config, resolve_config_path

    path = resolve_config_path(args.config)
    return path, load_config(path)


def _sync_config(args, path, required: bool = False):
    """(path, SyncConfig) of reference_sync.yml, or None when there is none beside the config."""
    from .config import load_sync_config, sync_config_path

    named = getattr(args, "sync_config", None)
    sync_path = sync_config_path(path, named)
    if not sync_path.exists() and not required and not named and "REFDATA_SYNC_CONFIG" not in os.environ:
        return None
    return sync_path, load_sync_config(sync_path)


def _orders(path, config):
    from .order import processing_order

    try:
        return {name: processing_order(name, d) for name, d in config.domains.items()}
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None


def cmd_validate(args) -> int:
    from .apply import checked
    from .db import catalog_dsn, connect, redact
    from .names import owner_role, qualified

    path, config = _config(args)
    orders = _orders(path, config)
    sync = _sync_config(args, path)
    count = sum(len(o) for o in orders.values())
    print(f"{path}: {len(orders)} domain(s), {count} foreign key(s)")
    for w in config.warnings:
        print(f"warning: {printable(w)}")
    for name, order in orders.items():
        d = config.domains[name]
        print(f"domain {name} (fact table {qualified(d.fact_schema, d.fact_table_for(name))}), processing order:")
        for i, fk in enumerate(order, start=1):
            deps = f"  after {', '.join(fk.depends_on)}" if fk.depends_on else ""
            keys = ", ".join(fk.keys)
            print(f"  {i}. {fk.name}: {', '.join(fk.sources)} -> {qualified(fk.target_schema, fk.target_table)} ({keys}){deps}")
    dsn, why = catalog_dsn(args.db)
    if not dsn:
        print(f"catalog: not checked ({why})")
        return 0
    with connect(dsn) as conn:
        _, report = checked(conn, config, str(path), (str(sync[0]), sync[1]) if sync else None, owner_role())
        conn.rollback()
    for w in report.warnings:
        print(f"warning: {printable(w)}")
    print(f"catalog: ok ({redact(dsn)})")
    return 0


def cmd_render(args) -> int:
    from .names import owner_role
    from .render import grants, render, script, write_directory

    path, config = _config(args)
    _orders(path, config)
    owner = owner_role(args.owner)
    sync = _sync_config(args, path)
    extra = []
    if sync:
        from .sync.render import statements as sync_statements

        extra = sync_statements(sync[1], config, for_script=True, owner=owner)[0]
    statements = render(config, sync=extra, owner=owner)
    for w in config.warnings:
        print(f"refdata: warning: {printable(w)}", file=sys.stderr)
    if args.grants:
        if args.output:
            raise InputError("render: --grants prints the role model to stdout; leave out -o")
        sys.stdout.write(grants(config, owner))
        return 0
    if args.output:
        try:
            files = write_directory(statements, Path(args.output))
        except OSError as e:
            raise cannot_write(args.output, e) from None
        print(f"wrote {len(files)} files to {args.output}; apply with: psql -v ON_ERROR_STOP=1 -f {files[0]}")
    else:
        sys.stdout.write(script(statements))
    return 0


def _scratch_db(args) -> str | None:
    from .db import checked_dsn

    return checked_dsn(args.scratch_db, "--scratch-db") if args.scratch_db else None


def cmd_plan(args) -> int:
    from .apply import plan
    from .db import DEFAULT_LOCK_TIMEOUT, connect, resolve_dsn
    from .names import owner_role

    path, config = _config(args)
    _orders(path, config)
    _scratch_db(args)
    with connect(resolve_dsn(args.db), autocommit=True) as conn:
        sync = _sync_config(args, path)
        the_plan, report = plan(conn, config, str(path), args.scratch_db, args.lock_timeout or DEFAULT_LOCK_TIMEOUT,
                                sync=(str(sync[0]), sync[1]) if sync else None, owner=owner_role(args.owner))
    for w in config.warnings + report.warnings:
        print(f"warning: {printable(w)}", file=sys.stderr)
    for name in the_plan.destructive:
        print(f"warning: drops data (apply needs --allow-drop): {name}", file=sys.stderr)
    _write(the_plan.script())
    return 3 if the_plan.steps else 0


def cmd_apply(args) -> int:
    from .apply import apply, run
    from .names import owner_role
    from .db import DEFAULT_LOCK_TIMEOUT, connect, redact, resolve_dsn
    from .catalog import configured_tables
    from .migrate.plan import read_plan

    path, config = _config(args)
    _orders(path, config)
    _scratch_db(args)
    owner = owner_role(args.owner)
    dsn = resolve_dsn(args.db)
    sync = _sync_config(args, path)
    with connect(dsn, autocommit=True) as conn:
        if args.sql:
            from .config import read_utf8

            text = read_utf8(Path(args.sql), args.sql, "plan")
            outcome = run(conn, read_plan(text, args.sql), configured_tables(config, sync[1] if sync else None),
                          args.allow_drop, args.lock_timeout)
        else:
            outcome = apply(conn, config, str(path), args.scratch_db, args.lock_timeout or DEFAULT_LOCK_TIMEOUT, args.allow_drop,
                            sync=(str(sync[0]), sync[1]) if sync else None, owner=owner)
    for w in config.warnings + (outcome.report.warnings if outcome.report else []) + outcome.warnings:
        print(f"warning: {printable(w)}")
    for n, s in enumerate(outcome.steps, start=1):
        print(f"  {n}. {s.kind} {s.name}")
    print(f"{outcome.summary()} ({redact(dsn)})")
    for w in outcome.report.unconnected if outcome.report else []:
        print(f"note: {printable(w)}")
    return 0


def cmd_uninstall(args) -> int:
    from .db import DEFAULT_LOCK_TIMEOUT, connect, redact, resolve_dsn
    from .migrate.uninstall import remove_schedule, uninstall

    path, config = _config(args)
    dsn = resolve_dsn(args.db)
    with connect(dsn, autocommit=True) as conn:
        sync = _sync_config(args, path)
        lines = uninstall(conn, config, args.domains, args.drop_tracking_columns, sync[1] if sync else None,
                          args.lock_timeout or DEFAULT_LOCK_TIMEOUT)
    if not args.domains:
        lines += remove_schedule(dsn)
    for line in lines:
        print(line)
    print(f"uninstalled {', '.join(args.domains) or 'refdata'} from {redact(dsn)}" if lines
          else f"nothing of refdata's in {redact(dsn)}")
    return 0


def cmd_load(args) -> int:
    from .db import connect, resolve_dsn
    from .load import Loader, Options, summary

    path, config = _config(args)
    options = Options(args.delimiter, args.encoding, args.null, Path(args.rejects) if args.rejects else None,
                      args.verify, force=args.force)
    with connect(resolve_dsn(args.db)) as conn:
        loader = Loader(conn, config, args.domain, Path(args.file), options)
        result = loader.run(progress=sys.stderr.isatty())
    print(summary(result, Path(args.file), loader.fact_label))
    return 0


def cmd_sync(args) -> int:
    from .db import resolve_dsn
    from .sync.run import sync

    path, config = _config(args)
    sync_path, sync_config = _sync_config(args, path, required=True)
    if not sync_config.enabled:
        print(f"reference sync is disabled (enabled: false in {sync_path}); nothing synced")
        return 0
    outcomes = sync(resolve_dsn(args.db), sync_config, Path.cwd(), args.tables, args.via)
    for o in outcomes:
        # a failed table's line quotes the source's values: escaped, like an error's
        print(printable(o.line()), file=sys.stdout if o.status == "succeeded" else sys.stderr)
    failed = [o for o in outcomes if o.status != "succeeded"]
    if failed:
        print(f"refdata: error: {len(failed)} of {len(outcomes)} table(s) failed; the others are synced",
              file=sys.stderr)
        return 1
    return 0


def cmd_schedule(args) -> int:
    from .db import resolve_dsn
    from .sync.schedule import check_expression, client_units, schedule, unschedule

    path, config = _config(args)
    sync_path, sync_config = _sync_config(args, path, required=True)
    dsn = resolve_dsn(args.db)
    if args.remove:
        print(unschedule(dsn))
        return 0
    if not sync_config.enabled:
        print(f"reference sync is disabled (enabled: false in {sync_path}); {unschedule(dsn)}")
        return 0
    expression = args.cron or sync_config.schedule
    if args.cron:
        check_expression(args.cron)
    if any(t.effective_via == "fdw" for t in sync_config.tables):
        print(schedule(dsn, expression))
    if any(t.effective_via == "client" for t in sync_config.tables):
        print(client_units(expression, dsn, path, sync_path), end="")
    return 0
def cmd_init(args) -> int:
    from .db import connect, resolve_dsn
    from .scaffold import scaffold

    if args.output and Path(args.output).exists():
        raise InputError(f"{args.output}: exists; refdata init writes only a new file")
    with connect(resolve_dsn(args.db)) as conn:
        text = scaffold(conn, args.fact, args.domain)
    if args.output:
        try:
            with Path(args.output).open("x", encoding="utf-8") as out:  # never overwrites
                out.write(text)
        except OSError as e:
            raise cannot_write(args.output, e) from None
        print(f"wrote {args.output}; next: bin/refdata --config {args.output} validate")
    else:
        sys.stdout.write(text)
    return 0


def cmd_names(args) -> int:
    from .render import generated_names

    path, config = _config(args)
    _orders(path, config)
    if args.domain and args.domain not in config.domains:
        raise InputError(f"{path}: domain {args.domain} is not in the config (known: {', '.join(config.domains)})")
    for name, d in config.domains.items():
        if args.domain in (None, name):
            print(f"domain {name}")
            names = generated_names(name, d)
            width = max(len(what) for what, _ in names) + 1
            for what, sql in names:
                print(f"  {what + ':':<{width}} {sql}")
    return 0


def cmd_demo(args) -> int:
    from .config import PROJECT_ROOT, DEFAULT_CONFIG, load_config
    from .demo import run

    # The demo's own config fits the sample schema; $REFDATA_CONFIG names the user's.
    path = Path(args.config) if args.config else PROJECT_ROOT / DEFAULT_CONFIG
    config = load_config(path)
    _orders(path, config)
    return run(args.db, config, str(path))


def cmd_db(args) -> int:
    from .cluster import Cluster

    cluster = Cluster()
    if args.action == "start":
        started = cluster.start()
        print(("started" if started else "already running") + f": {cluster.url()}")
    elif args.action == "stop":
        print("stopped" if cluster.stop() else "not running")
    elif args.action == "status":
        running = cluster.running()
        print(f"{'running' if running else 'not running'}: {cluster.data}")
        return 0 if running else 1
    else:
        print(cluster.url())
    return 0


def _connect(args):
    from .db import connect, resolve_dsn

    return connect(resolve_dsn(args.db), autocommit=True)


def cmd_status(args) -> int:
    from .review import quality

    with _connect(args) as conn:
        if args.loads is not None:
            from .review import loads

            print(loads.text(conn, args.loads))
        else:
            print(quality.status_text(conn))
    return 0


def cmd_check(args) -> int:
    from .review import quality

    _, config = _config(args)
    with _connect(args) as conn:
        rows = quality.quality(conn)
        orphans = quality.unreferenced(conn)
    found = quality.breaches(config, rows)
    lines = [b.line() for b in found]
    # worth a look, not a breach
    lines += [f"note: {label}: {n} row(s) awaiting review that no fact row names" for label, n in orphans]
    if not found:
        lines.append(f"ok: {len(rows)} reference table(s) within their thresholds")
    _write("".join(f"{line}\n" for line in lines))
    return 1 if found else 0


def cmd_report(args) -> int:
    from .review import report

    _, config = _config(args)
    with _connect(args) as conn:
        path = report.write(conn, config, Path(args.output))
    print(f"wrote {path}")
    return 0


def cmd_export_pending(args) -> int:
    from .review.export import export_pending

    with _connect(args) as conn:
        count = export_pending(conn, Path(args.output), args.table, args.excel)
    print(f"exported {count} row(s) awaiting review to {args.output}")
    return 0


def cmd_review(args) -> int:
    from .review import actions
    from .review.export import import_reviewed

    with _connect(args) as conn:
        if args.review_command == "import":
            count = import_reviewed(conn, Path(args.file))
            print(f"reviewed {count} row(s) from {args.file}")
        elif args.review_command == "approve":
            count = actions.approve(conn, args.table, args.keys)
            print(f"approved {count} row(s) of {args.table}")
        else:
            result = actions.merge(conn, args.table, args.wrong, args.right)
            moved = ", ".join(f"{k}: {v}" for k, v in sorted(result["repointed"].items())) or "none"
            print(f"merged {args.wrong} into {args.right} in {args.table}; rows re-pointed: {moved}")
    return 0


COMMANDS = {
    "validate": cmd_validate,
    "render": cmd_render,
    "plan": cmd_plan,
    "uninstall": cmd_uninstall,
    "apply": cmd_apply,
    "load": cmd_load,
    "sync": cmd_sync,
    "schedule": cmd_schedule,
    "init": cmd_init,
    "names": cmd_names,
    "demo": cmd_demo,
    "db": cmd_db,
    "status": cmd_status,
    "check": cmd_check,
    "report": cmd_report,
    "export-pending": cmd_export_pending,
    "review": cmd_review,
}


if __name__ == "__main__":
    sys.exit(main())
