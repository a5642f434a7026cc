-- The privileges and owners the owner role's rights statement
-- (sql/roles/rights.sql.j2) can change, to tell whether running it changes
-- anything: ACLs and owners of schemas, relations (their columns too) and
-- refdata's functions, outside PostgreSQL's own schemas.
SELECT 'schema' AS kind, n.nspname::text AS name, n.nspowner::regrole::text AS owner, n.nspacl::text AS acl
FROM pg_catalog.pg_namespace AS n
WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'relation', c.oid::regclass::text, c.relowner::regrole::text, c.relacl::text
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'column', c.oid::regclass::text || '.' || pg_catalog.quote_ident(a.attname), NULL, a.attacl::text
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE a.attacl IS NOT NULL AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'function', p.oid::regprocedure::text, p.proowner::regrole::text, p.proacl::text
FROM pg_catalog.pg_proc AS p
WHERE p.pronamespace = pg_catalog.to_regnamespace('refdata')
ORDER BY 1, 2
