-- The event triggers of refdata.owner_guard(): before every DDL command,
-- after it (what it created) and on drops. ENABLE ALWAYS: they fire under
-- session_replication_role = replica too. Only a superuser may create event
-- triggers; applied by anyone else, the owner role stays unguarded and the
-- apply says so.
DO $refdata$
DECLARE
    e record;
BEGIN
    IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user) THEN
        RAISE WARNING 'refdata: not applied by a superuser, so the owner role is not kept from running DDL (event triggers refdata_owner_guard_*)';
        RETURN;
    END IF;
    FOR e IN SELECT * FROM (VALUES ('refdata_owner_guard_start', 'ddl_command_start'),
                                   ('refdata_owner_guard_end', 'ddl_command_end'),
                                   ('refdata_owner_guard_drop', 'sql_drop')) AS v(name, event) LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger AS t WHERE t.evtname = e.name) THEN
            EXECUTE pg_catalog.format('CREATE EVENT TRIGGER %I ON %s EXECUTE FUNCTION refdata.owner_guard()', e.name, e.event);
        END IF;
        EXECUTE pg_catalog.format('ALTER EVENT TRIGGER %I ENABLE ALWAYS', e.name);
    END LOOP;
END
$refdata$;
