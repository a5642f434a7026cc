-- Records a run of the client path that failed before its merge (source
-- unreachable, a value the staging COPY refused).
CREATE OR REPLACE FUNCTION refdata.sync_failed(p_name text, p_started timestamptz, p_error text)
RETURNS refdata.sync_run
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $refdata$
    INSERT INTO refdata.sync_run (table_name, source, via, started_at, finished_at, status, error)
    SELECT s.name, s.source_label, 'client', p_started, clock_timestamp(), 'failed', p_error
    FROM refdata.sync_table AS s WHERE s.name = p_name
    RETURNING *;
$refdata$;
COMMENT ON FUNCTION refdata.sync_failed(text, timestamptz, text) IS 'refdata: records a failed client-path sync run';
REVOKE ALL ON FUNCTION refdata.sync_failed(text, timestamptz, text) FROM PUBLIC;
