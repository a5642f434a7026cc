-- A MySQL value's bytes as a message shows them: its text when it is UTF-8,
-- else escaped (so naming the row of a bad key cannot fail on that key).
CREATE OR REPLACE FUNCTION refdata.sync_label(p bytea)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $refdata$
BEGIN
    RETURN convert_from(p, 'UTF8');
EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
    RETURN encode(p, 'escape');
END
$refdata$;
COMMENT ON FUNCTION refdata.sync_label(bytea) IS 'refdata: a source value''s bytes as text for a message';
REVOKE ALL ON FUNCTION refdata.sync_label(bytea) FROM PUBLIC;
