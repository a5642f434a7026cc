-- The loads whose own statement is inserting facts whose parents they have
-- derived already: the backfill triggers of their domain skip those rows.
-- Written only by the owner's half of the load (D__load_parents); a row
-- counts only in its own transaction and statement, so setting
-- refdata.skip_backfill in a session switches nothing off. Rows of
-- finished loads are cleared by later ones.
CREATE UNLOGGED TABLE IF NOT EXISTS refdata.backfill_skip (
    txid              bigint NOT NULL,
    domain            text NOT NULL,
    statement_started timestamptz NOT NULL,
    PRIMARY KEY (txid, domain, statement_started)
);
COMMENT ON TABLE refdata.backfill_skip IS 'refdata: loads whose statement inserts facts with their parents derived already';
REVOKE ALL ON TABLE refdata.backfill_skip FROM PUBLIC;
