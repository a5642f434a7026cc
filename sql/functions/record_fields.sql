-- The fields of a record literal (row::text) in column order: a quoted
-- field unquoted, an empty unquoted one NULL (a NULL column). refdata.audit
-- takes a small statement's old and new rows apart with it. E'' literals:
-- the body is parsed in the caller's session, whose
-- standard_conforming_strings may be off.
CREATE OR REPLACE FUNCTION refdata.record_fields(record_text text)
RETURNS text[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $refdata$
    SELECT ARRAY(SELECT CASE WHEN m.f[1] LIKE '"%' THEN regexp_replace(substr(m.f[1], 2, length(m.f[1]) - 2), E'(["\\\\])\\1', E'\\1', 'g')
                             ELSE nullif(m.f[1], '') END
                 FROM regexp_matches(',' || substr(record_text, 2, length(record_text) - 2), ',("(?:[^"]|"")*"|[^,"]*)', 'g') AS m(f))
$refdata$;
