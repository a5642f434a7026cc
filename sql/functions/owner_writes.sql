-- True when the statement being audited runs as the owner of refdata's
-- functions, i.e. from inside one of them. Evaluated in the audit triggers'
-- WHEN clause, before the definer function switches roles, so a session
-- cannot pass its own writes off as refdata's (derive, fill, merge, ...).
-- PL/pgSQL keeps the query's plan for the session: a trigger's WHEN clause
-- calls a LANGUAGE sql function without inlining it and plans its query
-- anew for every statement, which cost each single-row write of a
-- reference table two such plans (one per audit trigger).
CREATE OR REPLACE FUNCTION refdata.owner_writes()
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $refdata$
BEGIN
    -- Read from the catalog by name: writers need no rights on schema refdata.
    RETURN EXISTS (SELECT FROM pg_catalog.pg_proc AS p
                   JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
                   WHERE n.nspname = 'refdata'
                     AND p.proname = 'audit' AND p.pronargs = 0
                     AND pg_catalog.pg_get_userbyid(p.proowner) = current_user);
END
$refdata$;
COMMENT ON FUNCTION refdata.owner_writes() IS 'refdata: is the current statement run by refdata''s own functions';
