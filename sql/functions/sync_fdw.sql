-- Every table synced through a foreign data wrapper, each in a transaction
-- of its own: what the pg_cron job calls. SECURITY INVOKER (transaction
-- control needs it, and so no SET clause; every name is qualified). The
-- definer is refdata.sync_table.
CREATE OR REPLACE PROCEDURE refdata.sync_fdw()
LANGUAGE plpgsql
AS $refdata$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT s.name FROM refdata.sync_table AS s WHERE s.via = 'fdw' ORDER BY s.name LOOP
        PERFORM refdata.sync_table(t.name);
        COMMIT AND NO CHAIN;
    END LOOP;
END
$refdata$;
COMMENT ON PROCEDURE refdata.sync_fdw() IS 'refdata: syncs every table of via: fdw, one transaction each (the pg_cron job)';
REVOKE ALL ON PROCEDURE refdata.sync_fdw() FROM PUBLIC;
