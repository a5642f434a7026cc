-- True when the statement being audited runs as the owner of refdata's
-- functions, i.e. from inside one of them. Evaluated in the audit triggers'
-- WHEN clause, before the definer function switches roles, so a session
-- cannot pass its own writes off as refdata's (derive, fill, merge, ...).
CREATE OR REPLACE FUNCTION refdata.owner_writes()
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $refdata$
    -- Read from the catalog by name: writers need no rights on schema refdata.
    SELECT EXISTS (SELECT FROM pg_catalog.pg_proc AS p
                   JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
                   JOIN pg_catalog.pg_roles AS r ON r.oid = p.proowner
                   WHERE n.nspname = 'refdata'
                     AND p.proname = 'audit' AND p.pronargs = 0
                     AND r.rolname = current_user)
$refdata$;
COMMENT ON FUNCTION refdata.owner_writes() IS 'refdata: is the current statement run by refdata''s own functions';
