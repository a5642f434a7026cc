-- Every insert, update and delete on the reference tables, a line per row,
-- read from refdata.audit_batch (one line there per statement). For an
-- UPDATE only the changed fields; an UPDATE that changed nothing shows no
-- line, one that changed the key a line for the old key (old values) and one
-- for the new (new values). `id` orders lines as they were written
-- (statement, then row). Each row is read once, by refdata.audit_rows.
DO $refdata$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_class AS c
               WHERE c.oid = pg_catalog.to_regclass('refdata.audit_log') AND c.relkind = 'r') THEN
        RAISE EXCEPTION 'refdata.audit_log is the table of an earlier refdata; keep its lines under another name (ALTER TABLE refdata.audit_log RENAME TO audit_log_before) and apply again'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$refdata$;
CREATE OR REPLACE VIEW refdata.audit_log AS
SELECT b.id * 100000 + l.line AS id,
       b.logged_at,
       b.txid,
       b.session_user_name,
       b.application_name,
       b.table_name,
       b.operation,
       b.action,
       b.domain,
       l.key,
       l.old_values,
       l.new_values
FROM refdata.audit_batch AS b
CROSS JOIN LATERAL (
    SELECT 2 * v.i - 1 + x.second AS line, x.key, x.old_values, x.new_values
    FROM refdata.audit_rows(b.old_rows, b.new_rows, b.columns, b.types) AS v
    CROSS JOIN LATERAL (SELECT (SELECT jsonb_object_agg(c, v.o -> c) FROM unnest(b.key_columns) AS c WHERE v.o IS NOT NULL) AS o,
                               (SELECT jsonb_object_agg(c, v.n -> c) FROM unnest(b.key_columns) AS c WHERE v.n IS NOT NULL) AS n OFFSET 0) AS k
    CROSS JOIN LATERAL (SELECT (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(v.o) AS e
                                WHERE e.value IS DISTINCT FROM v.n -> e.key) AS o,
                               (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(v.n) AS e
                                WHERE e.value IS DISTINCT FROM v.o -> e.key) AS n OFFSET 0) AS d
    CROSS JOIN LATERAL (VALUES
        -- an INSERT, a DELETE, an UPDATE that kept the key; the old key of one that changed it
        (0, coalesce(k.o, k.n),
            CASE WHEN v.n IS NULL OR k.o IS DISTINCT FROM k.n THEN v.o ELSE d.o END,
            CASE WHEN v.o IS NULL THEN v.n WHEN v.n IS NULL THEN b.detail WHEN k.o IS DISTINCT FROM k.n THEN NULL ELSE d.n END),
        -- the new key of an UPDATE that changed it
        (1, k.n, NULL, v.n)) AS x(second, key, old_values, new_values)
    WHERE CASE WHEN x.second = 0
               THEN v.o IS NULL OR v.n IS NULL OR k.o IS DISTINCT FROM k.n OR d.n IS NOT NULL
               ELSE v.o IS NOT NULL AND v.n IS NOT NULL AND k.o IS DISTINCT FROM k.n END
) AS l;
COMMENT ON VIEW refdata.audit_log IS 'refdata: every write to a reference table, a line per row; append-only';
