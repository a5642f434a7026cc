-- Row-level security of a parent table as refdata's owner role meets it:
-- whether it applies (on, and the role neither has BYPASSRLS nor owns the
-- table, unless FORCE; a role not created yet will have neither), whether
-- some permissive policy lets the role read rows and insert them, and
-- whether one lets it read and insert every row (USING (true), WITH CHECK
-- (true) or none) with no restrictive policy narrowing it.
WITH role AS (
    SELECT r.oid, r.rolbypassrls FROM pg_catalog.pg_roles AS r WHERE r.rolname = %(owner)s
), policy AS (
    SELECT p.polcmd, p.polpermissive,
           pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS qual,
           pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS check
    FROM pg_catalog.pg_policy AS p
    WHERE p.polrelid = %(oid)s
      AND (0 = ANY (p.polroles)
           OR EXISTS (SELECT FROM role, unnest(p.polroles) AS pr (oid) WHERE pg_catalog.pg_has_role(role.oid, pr.oid, 'USAGE')))
)
SELECT c.relrowsecurity
       AND NOT coalesce((SELECT role.rolbypassrls FROM role), false)
       AND (c.relforcerowsecurity
            OR NOT coalesce((SELECT pg_catalog.pg_has_role(role.oid, c.relowner, 'USAGE') FROM role), false)) AS applies,
       EXISTS (SELECT FROM policy WHERE polpermissive AND polcmd IN ('*', 'r'))
       AND EXISTS (SELECT FROM policy WHERE polpermissive AND polcmd IN ('*', 'a')) AS permitted,
       EXISTS (SELECT FROM policy WHERE polpermissive AND polcmd = '*' AND qual = 'true' AND coalesce("check", 'true') = 'true')
       AND NOT EXISTS (SELECT FROM policy WHERE NOT polpermissive) AS open
FROM pg_catalog.pg_class AS c
WHERE c.oid = %(oid)s
