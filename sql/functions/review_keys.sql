-- Key columns of a configured reference table, and the keys given to a
-- review function as key objects ({"column": value, ...}); a plain value
-- stands for a single-column key. Errors say what is wrong with which key.
CREATE OR REPLACE FUNCTION refdata.review_keys(reference_table regclass, keys jsonb, OUT key_columns name[], OUT key_objects jsonb)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $refdata$
DECLARE
    _rd_bad jsonb;
BEGIN
    SELECT l.key_columns INTO key_columns
      FROM refdata.reference_link AS l
     WHERE format('%I.%I', l.target_schema, l.target_table)::regclass = reference_table
     LIMIT 1;
    IF key_columns IS NULL THEN
        RAISE EXCEPTION '% is not a reference table of any configured foreign key', reference_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(keys) IS DISTINCT FROM 'array' THEN
        keys := jsonb_build_array(keys);
    END IF;
    SELECT jsonb_agg(CASE WHEN jsonb_typeof(e) = 'object' THEN e ELSE jsonb_build_object(key_columns[1], e) END ORDER BY n)
      INTO key_objects
      FROM jsonb_array_elements(keys) WITH ORDINALITY AS k (e, n);
    SELECT e INTO _rd_bad FROM jsonb_array_elements(key_objects) AS e
     WHERE (SELECT array_agg(x ORDER BY x) FROM jsonb_object_keys(e) AS x)
           IS DISTINCT FROM (SELECT array_agg(c::text ORDER BY c::text) FROM unnest(key_columns) AS c)
        OR EXISTS (SELECT FROM jsonb_each(e) AS v WHERE jsonb_typeof(v.value) IN ('null', 'object', 'array'))
     LIMIT 1;
    IF _rd_bad IS NOT NULL THEN
        RAISE EXCEPTION 'key % does not name the key column(s) % of % with a value each', _rd_bad, key_columns, reference_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$refdata$;
COMMENT ON FUNCTION refdata.review_keys(regclass, jsonb) IS 'refdata: key columns of a reference table and keys as key objects';
