-- The privileges and owners the owner role's rights statement
-- (sql/roles/rights.sql.j2) can change, to tell whether running it changes
-- anything: of schemas, relations (their columns too) and refdata's
-- functions outside PostgreSQL's own schemas, one row per grant (the order
-- of an ACL's items is left out: revoking and granting again reorders them).
WITH objects AS (
    SELECT 'schema' AS kind, n.nspname::text AS name, n.nspowner AS owner, n.nspacl AS acl
    FROM pg_catalog.pg_namespace AS n
    WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
    UNION ALL
    SELECT 'relation', c.oid::regclass::text, c.relowner, c.relacl
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
    UNION ALL
    SELECT 'column', c.oid::regclass::text || '.' || pg_catalog.quote_ident(a.attname), NULL, a.attacl
    FROM pg_catalog.pg_attribute AS a
    JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE a.attacl IS NOT NULL AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text, p.proowner, p.proacl
    FROM pg_catalog.pg_proc AS p
    WHERE p.pronamespace = pg_catalog.to_regnamespace('refdata')
)
SELECT o.kind, o.name, o.owner::regrole::text AS owner, x.grantor::regrole::text AS grantor,
       x.grantee, x.privilege_type, x.is_grantable
FROM objects AS o
LEFT JOIN LATERAL pg_catalog.aclexplode(o.acl) AS x ON true
ORDER BY 1, 2, 4, 5, 6
