-- One row per `refdata load` (source 'file'), per direct call of a load
-- function ('bulk') and per statement-mode batch ('statement'): what was loaded,
-- how, and per foreign key the pre-load coverage of that load (distinct
-- usable keys seen; how many had an authoritative parent, an auto-derived
-- one, and how many parents this load derived). Written by the owner's half
-- of each load and by the statement trigger functions, never by a loader;
-- `refdata status --loads` shows it.
CREATE TABLE IF NOT EXISTS refdata.load_run (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain        text NOT NULL,
    source        text NOT NULL CHECK (source IN ('file', 'bulk', 'statement')),
    file_name     text,
    file_size     bigint,
    file_sha256   text,
    rows          bigint NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    path          text NOT NULL,
    foreign_keys  jsonb NOT NULL,
    txid          bigint NOT NULL DEFAULT pg_catalog.txid_current(),
    loaded_by     text NOT NULL DEFAULT session_user
);
COMMENT ON TABLE refdata.load_run IS 'refdata: per load and statement-mode batch, rows, timing, path and per-FK coverage';
COMMENT ON COLUMN refdata.load_run.file_name IS 'refdata: the file as the loading client names it (refdata load); not checked by the server';
COMMENT ON COLUMN refdata.load_run.file_size IS 'refdata: the file''s size as the loading client names it; not checked by the server';
COMMENT ON COLUMN refdata.load_run.file_sha256 IS 'refdata: the file''s sha256 as the loading client names it; not checked by the server';
COMMENT ON COLUMN refdata.load_run.loaded_by IS 'refdata: the session user of the load (set by the server)';
REVOKE ALL ON TABLE refdata.load_run FROM PUBLIC;
