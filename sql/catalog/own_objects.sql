-- refdata's own objects with owner, comment and effective privileges (the
-- ACL, or the default one, exploded; the owner's own left out). migra does
-- not compare these, so plan does: desired against live.
WITH objects AS (
    SELECT 'SCHEMA' AS kind, format('%I', n.nspname) AS name, n.nspowner AS owner, n.nspacl AS acl,
           'n'::"char" AS acltype, pg_catalog.obj_description(n.oid, 'pg_namespace') AS comment
    FROM pg_catalog.pg_namespace AS n
    WHERE n.nspname IN ('refdata', 'refdata_stage')
    UNION ALL
    SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
           format('%I.%I', n.nspname, c.relname), c.relowner, c.relacl, 'r', pg_catalog.obj_description(c.oid, 'pg_class')
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname IN ('refdata', 'refdata_stage') AND c.relkind IN ('r', 'p', 'v', 'm')
    UNION ALL
    SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
           format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
           p.proowner, p.proacl, 'f', pg_catalog.obj_description(p.oid, 'pg_proc')
    FROM pg_catalog.pg_proc AS p
    JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
    WHERE n.nspname IN ('refdata', 'refdata_stage') AND p.prokind IN ('f', 'p')
)
SELECT o.kind, o.name, pg_catalog.pg_get_userbyid(o.owner) AS owner, o.comment,
       coalesce((SELECT jsonb_agg(jsonb_build_array(
                            CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_catalog.pg_get_userbyid(x.grantee)) END,
                            x.privilege_type, x.is_grantable) ORDER BY x.grantee, x.privilege_type)
                 FROM pg_catalog.aclexplode(coalesce(o.acl, pg_catalog.acldefault(o.acltype, o.owner))) AS x
                 WHERE x.grantee <> o.owner), '[]'::jsonb) AS grants
FROM objects AS o
ORDER BY 1, 2
