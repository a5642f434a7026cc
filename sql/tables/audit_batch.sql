-- The audit log's storage: one line per audited statement on a reference
-- table (and per 10,000 rows of a larger one), written by the audit
-- triggers (refdata.audit) and nobody else: no role but the owner may write,
-- change or remove a line. Read it through the view refdata.audit_log,
-- which has a line per row. The rows are kept as their fields' text (each
-- its type's output), in two-dimensional arrays, [row][column], that TOAST
-- compresses: no quoting to do makes it the cheapest whole-row conversion,
-- so a bulk write pays little for its audit (jsonb is built when the log is
-- read). Lines written by an earlier refdata hold per row its record
-- literal (`row::text`) in a one-dimensional array; the log reads both.
-- `columns` and `types` say how to read the fields back, also after the
-- table changed.
-- `action` and `domain` say which refdata function made the change (derive,
-- fill, promote, approve, review, merge, sync); they are only taken from the
-- session when the write ran as refdata's owner.
CREATE TABLE IF NOT EXISTS refdata.audit_batch (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    logged_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    txid              bigint NOT NULL DEFAULT pg_catalog.txid_current(),
    session_user_name text NOT NULL DEFAULT session_user,
    application_name  text,
    table_name        regclass NOT NULL,
    operation         text NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    action            text,
    domain            text,
    key_columns       text[] NOT NULL,
    columns           text[] NOT NULL,
    types             regtype[] NOT NULL,
    old_rows          text[],
    new_rows          text[],
    detail            jsonb,
    CHECK (cardinality(columns) = cardinality(types)),
    CHECK (old_rows IS NOT NULL OR new_rows IS NOT NULL)
);
-- lz4 where the server has it: several times faster than pglz for about the
-- same size.
DO $refdata$
BEGIN
    ALTER TABLE refdata.audit_batch ALTER COLUMN old_rows SET COMPRESSION lz4, ALTER COLUMN new_rows SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END
$refdata$;
COMMENT ON TABLE refdata.audit_batch IS 'refdata: the audit log''s lines, one per audited statement (read refdata.audit_log); append-only';
COMMENT ON COLUMN refdata.audit_batch.old_rows IS 'refdata: per row the old row''s fields as text, [row][column] (UPDATE: in the order of new_rows)';
REVOKE ALL ON TABLE refdata.audit_batch FROM PUBLIC;
