-- One row per table per sync run, failed runs included (with the reason).
CREATE TABLE IF NOT EXISTS refdata.sync_run (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name  text NOT NULL,
    source      text NOT NULL,
    via         text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    status      text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    inserted    bigint NOT NULL DEFAULT 0,
    updated     bigint NOT NULL DEFAULT 0,
    promoted    bigint NOT NULL DEFAULT 0,
    unchanged   bigint NOT NULL DEFAULT 0,
    deleted     bigint NOT NULL DEFAULT 0,
    kept        bigint NOT NULL DEFAULT 0,
    error       text
);
CREATE INDEX IF NOT EXISTS sync_run_table_name_started_at ON refdata.sync_run (table_name, started_at);
COMMENT ON TABLE refdata.sync_run IS 'refdata: reference sync runs per table with their counts';
REVOKE ALL ON TABLE refdata.sync_run FROM PUBLIC;
