-- What refdata sync needs per synced table, written by apply with bound
-- parameters: config values stay data, never function text.
CREATE TABLE IF NOT EXISTS refdata.sync_table (
    name           text PRIMARY KEY,
    target_schema  text NOT NULL,
    target_table   text NOT NULL,
    source_type    text NOT NULL,
    source_label   text NOT NULL,
    via            text NOT NULL CHECK (via IN ('fdw', 'client')),
    mode           text NOT NULL CHECK (mode IN ('upsert', 'delete_insert')),
    keys           text[] NOT NULL,
    columns        jsonb NOT NULL,
    source_schema  text,
    source_table   text,
    stage_schema   text NOT NULL,
    stage_table    text NOT NULL,
    updated_column text,
    updated_op     text CHECK (updated_op IN ('>=', '>')),
    refs           jsonb NOT NULL DEFAULT '[]',
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE refdata.sync_table IS 'refdata: synced reference tables (columns: [[source, target], ...]; refs: fact columns naming the target, from data_sources.yml), written by refdata apply';
REVOKE ALL ON TABLE refdata.sync_table FROM PUBLIC;
