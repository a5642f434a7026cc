-- Whether a value of one type can be stored in a column of another without
-- an explicit cast (the rule INSERT applies).
SELECT %(source)s::oid = %(target)s::oid
    OR EXISTS (SELECT FROM pg_catalog.pg_cast AS c
               WHERE c.castsource = %(source)s::oid
                 AND c.casttarget = %(target)s::oid
                 AND c.castcontext IN ('a', 'i')) AS ok
