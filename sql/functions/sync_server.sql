-- Creates or updates a foreign server for reference sync. Options arrive
-- as data (apply binds them from the environment), so no connection
-- detail is ever part of SQL text. An option given as NULL is one the
-- environment no longer gives: dropped, so a removed ?sslmode= or dbname
-- does not linger.
CREATE OR REPLACE FUNCTION refdata.sync_server(p_server text, p_wrapper text, p_options jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $refdata$
DECLARE
    o record;
    have text[];
BEGIN
    IF NOT EXISTS (SELECT FROM pg_foreign_server WHERE srvname = p_server) THEN
        EXECUTE format('CREATE SERVER %I FOREIGN DATA WRAPPER %I', p_server, p_wrapper);
    END IF;
    have := ARRAY(SELECT split_part(x, '=', 1) FROM pg_foreign_server AS s, unnest(s.srvoptions) AS x
                  WHERE s.srvname = p_server);
    FOR o IN SELECT key, value FROM jsonb_each_text(p_options) LOOP
        IF o.value IS NOT NULL THEN
            EXECUTE format('ALTER SERVER %I OPTIONS (%s %I %L)', p_server,
                           CASE WHEN o.key = ANY (have) THEN 'SET' ELSE 'ADD' END, o.key, o.value);
        ELSIF o.key = ANY (have) THEN
            EXECUTE format('ALTER SERVER %I OPTIONS (DROP %I)', p_server, o.key);
        END IF;
    END LOOP;
END
$refdata$;
COMMENT ON FUNCTION refdata.sync_server(text, text, jsonb) IS 'refdata: creates or updates a foreign server of reference sync';
REVOKE ALL ON FUNCTION refdata.sync_server(text, text, jsonb) FROM PUBLIC;
