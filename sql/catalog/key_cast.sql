-- Whether a fact key value reaches the parent's key column unchanged, so the
-- parent derived for it is the one it names: the same type, a conversion
-- PostgreSQL makes implicitly (widening: integer to bigint, varchar to text,
-- date to timestamp), any string into a string, or integers of another width
-- (out of range fails, never rounds). Assignment-only conversions round or
-- truncate (numeric to integer, timestamp to date) or depend on the session
-- (timestamptz to timestamp).
SELECT %(source)s::oid = %(target)s::oid
    OR (s.typcategory = 'S' AND t.typcategory = 'S')
    OR (%(source)s::oid IN (20, 21, 23) AND %(target)s::oid IN (20, 21, 23))
    OR EXISTS (SELECT FROM pg_catalog.pg_cast AS c
               WHERE c.castsource = %(source)s::oid
                 AND c.casttarget = %(target)s::oid
                 AND c.castcontext = 'i') AS ok
FROM pg_catalog.pg_type AS s, pg_catalog.pg_type AS t
WHERE s.oid = %(source)s::oid AND t.oid = %(target)s::oid
