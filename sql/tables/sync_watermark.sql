-- Incremental sync: the greatest source change time a committed run has
-- brought in, per table. Moved only in the transaction of a run that commits.
CREATE TABLE IF NOT EXISTS refdata.sync_watermark (
    table_name     text PRIMARY KEY,
    last_synced_at timestamptz NOT NULL,
    run_id         bigint,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE refdata.sync_watermark IS 'refdata: last_synced_at per incrementally synced table';
REVOKE ALL ON TABLE refdata.sync_watermark FROM PUBLIC;
