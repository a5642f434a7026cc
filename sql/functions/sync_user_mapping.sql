-- Credentials of a reference sync server, for the role that owns the sync
-- functions (they read the foreign tables as that role) and no other role.
-- Credentials arrive as data, bound by apply from the environment: they
-- never appear in SQL text. Options the environment no longer gives (a
-- removed password) are dropped; credentials for PUBLIC that an earlier
-- version set are removed.
DROP FUNCTION IF EXISTS refdata.sync_user_mapping(text, jsonb);
CREATE OR REPLACE FUNCTION refdata.sync_user_mapping(p_server text, p_role text, p_options jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $refdata$
DECLARE
    o record;
    have text[];
    msg text;
    state text;
BEGIN
    EXECUTE format('DROP USER MAPPING IF EXISTS FOR PUBLIC SERVER %I', p_server);
    EXECUTE format('CREATE USER MAPPING IF NOT EXISTS FOR %I SERVER %I', p_role, p_server);
    have := ARRAY(SELECT split_part(x, '=', 1) FROM pg_user_mappings AS m, unnest(m.umoptions) AS x
                  WHERE m.srvname = p_server AND m.usename = p_role);
    FOR o IN SELECT key, value FROM jsonb_each_text(p_options) LOOP
        IF o.value IS NOT NULL THEN
            BEGIN
                EXECUTE format('ALTER USER MAPPING FOR %I SERVER %I OPTIONS (%s %I %L)', p_role, p_server,
                               CASE WHEN o.key = ANY (have) THEN 'SET' ELSE 'ADD' END, o.key, o.value);
            EXCEPTION WHEN OTHERS THEN
                -- raised again without the statement, which holds the credential, as its context
                GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
                RAISE EXCEPTION USING MESSAGE = format('setting option %s of the user mapping for server %s: %s',
                                                       o.key, p_server, msg), ERRCODE = state;
            END;
        ELSIF o.key = ANY (have) THEN
            EXECUTE format('ALTER USER MAPPING FOR %I SERVER %I OPTIONS (DROP %I)', p_role, p_server, o.key);
        END IF;
    END LOOP;
END
$refdata$;
COMMENT ON FUNCTION refdata.sync_user_mapping(text, text, jsonb) IS 'refdata: sets the credentials of a reference sync server';
REVOKE ALL ON FUNCTION refdata.sync_user_mapping(text, text, jsonb) FROM PUBLIC;
