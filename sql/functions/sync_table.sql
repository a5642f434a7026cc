-- One table's sync run in its own subtransaction: merge, move the watermark
-- (only when the merge succeeded), record the run with its counts or the
-- reason it failed. Connection failures are retried with backoff. What pg_cron
-- and refdata sync call; SECURITY DEFINER so an operator role needs only EXECUTE.
CREATE OR REPLACE FUNCTION refdata.sync_table(p_name text, p_columns text[] DEFAULT NULL)
RETURNS refdata.sync_run
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $refdata$
DECLARE
    p refdata.sync_table;
    m record;
    run refdata.sync_run;
    started timestamptz := clock_timestamp();
    attempt integer := 0;
    msg text;
    state text;
    wrapper text;
    since timestamptz;
    total bigint;
BEGIN
    SELECT * INTO p FROM refdata.sync_table AS s WHERE s.name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no synced table named %; run refdata apply', p_name USING ERRCODE = 'undefined_object';
    END IF;
    -- No foreign table (the last apply set the table up via: client): the
    -- merge records the run as failed and says to apply.
    IF p_columns IS NULL AND p.source_table IS NOT NULL THEN
        SELECT w.fdwname INTO wrapper
          FROM pg_foreign_table AS ft JOIN pg_foreign_server AS fs ON fs.oid = ft.ftserver
          JOIN pg_foreign_data_wrapper AS w ON w.oid = fs.srvfdw
         WHERE ft.ftrelid = to_regclass(format('%I.%I', p.source_schema, p.source_table));
    END IF;
    LOOP
        attempt := attempt + 1;
        BEGIN
            SELECT w.last_synced_at INTO since FROM refdata.sync_watermark AS w
             WHERE w.table_name = p_name AND p.updated_column IS NOT NULL;
            SELECT * INTO m FROM refdata.sync_merge(p_name, p_columns);
            -- mysql_fdw ends a scan, with no error, at a value it cannot read
            -- (a YEAR into a text column, as foreign tables of earlier
            -- versions had): the rows it did not read would look gone from
            -- the source. Its count, pushed down to MySQL, tells.
            IF wrapper = 'mysql_fdw' THEN
                EXECUTE format('SELECT count(*) FROM %I.%I AS s%s', p.source_schema, p.source_table,
                               CASE WHEN since IS NOT NULL THEN format(' WHERE s.%I %s $1', p.updated_column,
                                   CASE p.updated_op WHEN '>' THEN '>' ELSE '>=' END) ELSE '' END)
                    INTO total USING since;
                IF total > m.inserted + m.updated + m.promoted + m.unchanged THEN
                    RAISE EXCEPTION 'mysql_fdw read % of the source''s % rows and stopped without an error, at a value it cannot read (a YEAR column read as text by a foreign table an earlier version set up?): run refdata apply, or sync the table via: client',
                        m.inserted + m.updated + m.promoted + m.unchanged, total USING ERRCODE = 'data_exception';
                END IF;
            END IF;
            INSERT INTO refdata.sync_run (table_name, source, via, started_at, finished_at, status,
                                          inserted, updated, promoted, unchanged, deleted, kept)
            VALUES (p_name, p.source_label, CASE WHEN p_columns IS NULL THEN 'fdw' ELSE 'client' END,
                    started, clock_timestamp(), 'succeeded',
                    m.inserted, m.updated, m.promoted, m.unchanged, m.deleted, m.kept)
            RETURNING * INTO run;
            IF m.watermark IS NOT NULL THEN
                INSERT INTO refdata.sync_watermark AS w (table_name, last_synced_at, run_id)
                VALUES (p_name, m.watermark, run.id)
                ON CONFLICT (table_name) DO UPDATE
                    SET last_synced_at = greatest(w.last_synced_at, EXCLUDED.last_synced_at),
                        run_id = EXCLUDED.run_id, updated_at = now();
            END IF;
            RETURN run;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            -- Only an unreachable source is worth another try; bad data stays bad.
            EXIT WHEN attempt >= 3 OR NOT (state LIKE '08%' OR state IN ('HV00N', '57P01'))
                      OR p_columns IS NOT NULL;
            PERFORM pg_sleep(0.5 * 2 ^ (attempt - 1));
        END;
    END LOOP;
    INSERT INTO refdata.sync_run (table_name, source, via, started_at, finished_at, status, error)
    VALUES (p_name, p.source_label, CASE WHEN p_columns IS NULL THEN 'fdw' ELSE 'client' END,
            started, clock_timestamp(), 'failed', format('table %s: %s', p_name, msg))
    RETURNING * INTO run;
    RETURN run;
END
$refdata$;
COMMENT ON FUNCTION refdata.sync_table(text, text[]) IS 'refdata: syncs one reference table (fdw path, or the staged rows of the client path) and records the run';
REVOKE ALL ON FUNCTION refdata.sync_table(text, text[]) FROM PUBLIC;
