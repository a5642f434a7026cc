-- A MySQL BIT value as mysql_fdw hands it to a bytea column (its bytes, most
-- significant first, at most 8) as the number it is: b'101' is 5, BIT(64)
-- up to 2^64 - 1. What the merge casts to the target, as the client path's
-- BIT text.
CREATE OR REPLACE FUNCTION refdata.sync_bit(p bytea)
RETURNS numeric
LANGUAGE sql
IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $refdata$
    SELECT CASE WHEN v < 0 THEN v + 18446744073709551616 ELSE v END
      FROM (SELECT CAST(CAST(CAST('x' || lpad(encode(p, 'hex'), 16, '0') AS bit(64)) AS bigint) AS numeric) AS v) AS b;
$refdata$;
COMMENT ON FUNCTION refdata.sync_bit(bytea) IS 'refdata: the number a MySQL BIT value''s bytes hold';
REVOKE ALL ON FUNCTION refdata.sync_bit(bytea) FROM PUBLIC;
