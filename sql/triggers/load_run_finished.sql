-- A load's row of refdata.load_run gets its finished_at at commit
-- (statement-mode batches record their own end).
DO $refdata$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger AS t
                   WHERE t.tgrelid = 'refdata.load_run'::regclass AND t.tgname = 'refdata_load_run_finished') THEN
        CREATE CONSTRAINT TRIGGER refdata_load_run_finished
            AFTER INSERT ON refdata.load_run
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW
            WHEN (NEW.source <> 'statement')
            EXECUTE FUNCTION refdata.load_run_finished();
    END IF;
END
$refdata$;
