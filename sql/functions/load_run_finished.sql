-- The end of a load as refdata.load_run records it: when its transaction
-- commits. The owner's half of the load writes the row before the facts are
-- inserted, and no loader may write the log, so this runs as the owner, from
-- the deferred trigger of sql/triggers/load_run_finished.sql.
CREATE OR REPLACE FUNCTION refdata.load_run_finished()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $refdata$
BEGIN
    UPDATE refdata.load_run AS r SET finished_at = clock_timestamp() WHERE r.id = NEW.id;
    RETURN NULL;
END
$refdata$;
REVOKE ALL ON FUNCTION refdata.load_run_finished() FROM PUBLIC;
COMMENT ON FUNCTION refdata.load_run_finished() IS 'refdata: sets finished_at of a load when its transaction commits';
