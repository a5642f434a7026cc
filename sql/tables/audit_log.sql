-- Every insert, update and delete on the reference tables, written by the
-- audit triggers (refdata.audit) and nobody else: no role but the owner may
-- write, change or remove a line. `action` and `domain` say which refdata
-- function made the change (derive, fill, promote, approve, review, merge);
-- they are only taken from the session when the write ran as refdata's owner.
CREATE TABLE IF NOT EXISTS refdata.audit_log (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    logged_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    txid              bigint NOT NULL DEFAULT pg_catalog.txid_current(),
    session_user_name text NOT NULL DEFAULT session_user,
    application_name  text,
    table_name        regclass NOT NULL,
    operation         text NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    action            text,
    domain            text,
    key               jsonb NOT NULL,
    old_values        jsonb,
    new_values        jsonb
);
-- Cheap to keep up on bulk writes: a BRIN index on the time (rows arrive in
-- its order). Looking rows up by key often? CREATE INDEX ON refdata.audit_log
-- (table_name, key) makes every audited row pay for a btree insert.
CREATE INDEX IF NOT EXISTS audit_log_logged_at ON refdata.audit_log USING brin (logged_at);
COMMENT ON TABLE refdata.audit_log IS 'refdata: every write to a reference table; append-only';
REVOKE ALL ON TABLE refdata.audit_log FROM PUBLIC;
