-- Code of others runs as the owner role whenever refdata's functions write
-- or read their tables (triggers, defaults, policies of reference and fact
-- tables). That role owns refdata's functions and staging tables, so such
-- code could alter them (SECURITY INVOKER, another search_path), grant
-- them, or plant temporary tables in the caller's session, for a caller
-- (often a superuser) to run later. The owner role runs no DDL at all but
-- the temporary "_rd_" tables of refdata's own functions; the event
-- triggers of sql/triggers/owner_guard.sql call this on every DDL command.
-- Its LIKE pattern's backslashes must stay backslashes whatever the code
-- it guards set standard_conforming_strings to (else _ matches any
-- character, and a temporary table "ordinal" passes for one of refdata's).
CREATE OR REPLACE FUNCTION refdata.owner_guard()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on
AS $refdata$
DECLARE
    o record;
BEGIN
    -- Is the current user the owner of refdata's functions? Read from the
    -- catalog (every role's DDL comes here, most without rights on schema
    -- refdata). Until apply hands them over they are the applier's, a
    -- superuser's, whose DDL this is not about; the owner never is one.
    IF NOT EXISTS (SELECT FROM pg_proc AS p
                   JOIN pg_namespace AS n ON n.oid = p.pronamespace
                   JOIN pg_roles AS r ON r.oid = p.proowner
                   WHERE n.nspname = 'refdata' AND p.proname = 'audit' AND p.pronargs = 0
                     AND r.rolname = current_user AND NOT r.rolsuper) THEN
        RETURN;
    END IF;
    IF TG_EVENT = 'ddl_command_start' AND TG_TAG NOT IN ('CREATE TABLE', 'CREATE TABLE AS', 'DROP TABLE') THEN
        RAISE EXCEPTION 'role % may not run %: it runs refdata''s functions and nothing else', current_user, TG_TAG
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_EVENT = 'ddl_command_end' THEN
        FOR o IN SELECT c.object_identity FROM pg_event_trigger_ddl_commands() AS c
                 WHERE c.classid = 'pg_class'::regclass
                   AND (c.objid NOT IN (SELECT r.oid FROM pg_class AS r WHERE r.relnamespace = pg_my_temp_schema())
                        OR c.object_identity NOT LIKE 'pg\_temp.\_rd\_%') LOOP
            RAISE EXCEPTION 'role % may not create %: it creates refdata''s own temporary tables only', current_user,
                o.object_identity USING ERRCODE = 'insufficient_privilege';
        END LOOP;
    END IF;
    IF TG_EVENT = 'sql_drop' THEN
        FOR o IN SELECT d.object_identity FROM pg_event_trigger_dropped_objects() AS d WHERE NOT d.is_temporary LOOP
            RAISE EXCEPTION 'role % may not drop %: it drops refdata''s own temporary tables only', current_user,
                o.object_identity USING ERRCODE = 'insufficient_privilege';
        END LOOP;
    END IF;
END
$refdata$;
COMMENT ON FUNCTION refdata.owner_guard() IS 'refdata: refuses DDL run as the owner role of refdata''s functions';
REVOKE ALL ON FUNCTION refdata.owner_guard() FROM PUBLIC;
