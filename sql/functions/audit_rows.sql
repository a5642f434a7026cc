-- The rows of one line of refdata.audit_batch, each as jsonb (NULL where the
-- statement had no old or no new row), numbered in the order they were
-- written: p_old and p_new hold per row its fields, [row][column], in the
-- order of p_columns, whose types p_types names; a line written before the
-- fields were kept apart holds per row its record literal
-- (refdata.audit_values reads those). Each value is read by
-- refdata.audit_value. The work_mem keeps a line's rows in memory while
-- their fields are put together.
CREATE OR REPLACE FUNCTION refdata.audit_rows(p_old text[], p_new text[], p_columns text[], p_types regtype[],
                                              OUT i bigint, OUT o jsonb, OUT n jsonb)
RETURNS SETOF record
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET work_mem = '64MB'
AS $refdata$
    SELECT (u.k - 1) / cardinality(p_columns) + 1,
           jsonb_object_agg(p_columns[f.c], refdata.audit_value(u.o, p_types[f.c])) FILTER (WHERE p_old IS NOT NULL),
           jsonb_object_agg(p_columns[f.c], refdata.audit_value(u.n, p_types[f.c])) FILTER (WHERE p_new IS NOT NULL)
    FROM unnest(p_old, p_new) WITH ORDINALITY AS u(o, n, k)
    CROSS JOIN LATERAL (SELECT (u.k - 1) % cardinality(p_columns) + 1 AS c) AS f
    WHERE array_ndims(coalesce(p_new, p_old)) = 2
    GROUP BY 1
    UNION ALL
    SELECT u.i, refdata.audit_values(u.o, p_columns, p_types), refdata.audit_values(u.n, p_columns, p_types)
    FROM unnest(p_old, p_new) WITH ORDINALITY AS u(o, n, i)
    WHERE array_ndims(coalesce(p_new, p_old)) = 1
$refdata$;
COMMENT ON FUNCTION refdata.audit_rows(text[], text[], text[], regtype[]) IS 'refdata: the rows of one line of the audit log''s storage as jsonb';
