{%- from "macros/session_kept.sql.j2" import session_kept -%}
-- refdata review merge: the auto-derived (or any) row WRONG is really RIGHT.
-- Re-points every fact row of every configured foreign key, and every row
-- of a declared foreign key, from WRONG to RIGHT, then deletes WRONG; one
-- transaction, audited (the delete line carries action 'merge' and, as
-- new_values, the key merged into and the rows re-pointed per FK). Returns
-- those counts.
CREATE OR REPLACE FUNCTION refdata.review_merge(table_name text, wrong_key jsonb, right_key jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $refdata$
DECLARE
    -- resolved as the owner: a reviewer needs no rights on the table's schema
    reference_table regclass := table_name::regclass;
    _rd_columns name[];
    _rd_wrong jsonb;
    _rd_right jsonb;
    _rd_match text;
    _rd_found boolean;
    _rd_link record;
    _rd_count bigint;
    _rd_repointed jsonb := '{}';
    _rd_equality jsonb;
BEGIN
    SELECT k.key_columns, k.key_objects -> 0 INTO _rd_columns, _rd_wrong FROM refdata.review_keys(reference_table, wrong_key) AS k;
    SELECT k.key_objects -> 0 INTO _rd_right FROM refdata.review_keys(reference_table, right_key) AS k;
    SELECT string_agg(format('t.%I = r.%I', c, c), ' AND ') INTO _rd_match FROM unnest(_rd_columns) AS c;
    FOR _rd_link IN SELECT * FROM (VALUES (_rd_wrong), (_rd_right)) AS v (k) LOOP
        EXECUTE format('SELECT EXISTS (SELECT FROM %s AS t, jsonb_populate_record(NULL::%s, $1) AS r WHERE %s)',
                       reference_table, reference_table, _rd_match)
           INTO _rd_found USING _rd_link.k;
        IF NOT _rd_found THEN
            RAISE EXCEPTION 'key % does not exist in %', _rd_link.k, reference_table USING ERRCODE = 'no_data_found';
        END IF;
    END LOOP;
    EXECUTE format('SELECT (SELECT row(%1$s) FROM jsonb_populate_record(NULL::%2$s, $1) AS r) = (SELECT row(%1$s) FROM jsonb_populate_record(NULL::%2$s, $2) AS r)',
                   (SELECT string_agg(format('r.%I', c), ', ') FROM unnest(_rd_columns) AS c), reference_table)
       INTO _rd_found USING _rd_wrong, _rd_right;
    IF _rd_found THEN
        RAISE EXCEPTION 'cannot merge key % of % into itself', _rd_wrong, reference_table USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- A writer in flight may have named WRONG in a fact row it has not
    -- committed (the row trigger found the parent and took no lock): without
    -- a declared constraint that row would name a deleted key. Wait for the
    -- writers of the configured fact tables, and keep new ones out until the
    -- merge commits; each statement below then sees their rows. Self-
    -- conflicting, so two merges take turns; in name order, so they cannot
    -- deadlock on the tables.
    FOR _rd_link IN SELECT DISTINCT format('%I.%I', l.fact_schema, l.fact_table) AS fact
                      FROM refdata.reference_link AS l
                     WHERE format('%I.%I', l.target_schema, l.target_table)::regclass = reference_table
                     ORDER BY 1 LOOP
        EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', _rd_link.fact);
    END LOOP;
    -- A fact names WRONG as a FOREIGN KEY compares: a citext key by its
    -- type's own = (named with its schema: it lies outside pg_catalog), a
    -- char(n) key as char, the fact value cast to the key's type. `=` as
    -- pg_catalog resolves it compares both as text, and facts naming WRONG
    -- in another case, or with other trailing spaces, stayed behind.
    SELECT jsonb_object_agg(a.attname, jsonb_build_object(
               'op', CASE WHEN e.operator IS NULL THEN '=' ELSE format('OPERATOR(%I.%s)', e.operator_schema, e.operator) END,
               'cast', CASE WHEN e.operator IS NULL THEN '' ELSE format('::%I.%I', e.type_schema, e.type_name) END))
      INTO _rd_equality
      FROM pg_catalog.pg_attribute AS a
      JOIN pg_catalog.pg_type AS y ON y.oid = a.atttypid
      LEFT JOIN LATERAL (
          SELECT n.nspname AS operator_schema, o.oprname AS operator, tn.nspname AS type_schema, t.typname AS type_name
            FROM pg_catalog.pg_opclass AS c
            JOIN pg_catalog.pg_amop AS m
              ON m.amopfamily = c.opcfamily AND m.amoplefttype = c.opcintype AND m.amoprighttype = c.opcintype
             AND m.amopmethod = 403 AND m.amopstrategy = 3
            JOIN pg_catalog.pg_operator AS o ON o.oid = m.amopopr
            JOIN pg_catalog.pg_namespace AS n ON n.oid = o.oprnamespace
            JOIN pg_catalog.pg_type AS t ON t.oid = c.opcintype
            JOIN pg_catalog.pg_namespace AS tn ON tn.oid = t.typnamespace
           WHERE c.opcmethod = 403 AND c.opcdefault
             AND c.opcintype = CASE WHEN y.typtype = 'd' THEN y.typbasetype ELSE y.oid END
             -- other keys: `=` finds their own equality, cross-type too (bigint facts, integer keys)
             AND (n.nspname <> 'pg_catalog' OR c.opcintype = 'pg_catalog.bpchar'::pg_catalog.regtype)) AS e ON true
     WHERE a.attrelid = reference_table AND a.attname = ANY (_rd_columns);
    -- Configured foreign keys first, then declared constraints (from facts or
    -- other reference tables) that a configured one does not already cover.
    FOR _rd_link IN
        SELECT true AS configured, l.domain || '.' || l.foreign_key AS name,
               format('%I.%I', l.fact_schema, l.fact_table) AS fact,
               l.source_columns AS sources, l.key_columns AS keys
          FROM refdata.reference_link AS l
         WHERE format('%I.%I', l.target_schema, l.target_table)::regclass = reference_table
        UNION ALL
        SELECT false, c.conname, c.conrelid::regclass::text,
               ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k (n, i)
                     JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
               ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k (n, i)
                     JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
          FROM pg_catalog.pg_constraint AS c
         WHERE c.contype = 'f' AND c.confrelid = reference_table
           -- a partition's clone of its table's constraint: the table's re-points its rows
           AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint AS cp
                            WHERE cp.oid = c.conparentid AND cp.confrelid = c.confrelid)
        ORDER BY 1 DESC, 2
    LOOP
        IF NOT (_rd_link.keys <@ _rd_columns AND _rd_columns <@ _rd_link.keys) THEN
            CONTINUE;  -- a constraint on other columns of the table
        END IF;
        -- Each re-pointed row must name RIGHT as it is stored: assignment
        -- cuts a key whose characters beyond a shorter fact column are all
        -- spaces, and the row would name another key (kept is false).
        EXECUTE format('WITH u AS (UPDATE %1$s AS f SET (%2$s) = (SELECT %3$s FROM jsonb_populate_record(NULL::%4$s, $1) AS r)
                                     FROM jsonb_populate_record(NULL::%4$s, $2) AS w
                                   WHERE %6$s
                                   RETURNING (%5$s) = (SELECT %3$s FROM jsonb_populate_record(NULL::%4$s, $1) AS r) AS kept)
                        SELECT count(*), coalesce(bool_and(u.kept), true) FROM u',
                       _rd_link.fact,
                       (SELECT string_agg(format('%I', s), ', ' ORDER BY i) FROM unnest(_rd_link.sources) WITH ORDINALITY AS x (s, i)),
                       (SELECT string_agg(format('r.%I', k), ', ' ORDER BY i) FROM unnest(_rd_link.keys) WITH ORDINALITY AS x (k, i)),
                       reference_table,
                       (SELECT string_agg(format('f.%I', s), ', ' ORDER BY i) FROM unnest(_rd_link.sources) WITH ORDINALITY AS x (s, i)),
                       (SELECT string_agg(format('w.%I %s f.%I%s', k, _rd_equality -> k ->> 'op', s, _rd_equality -> k ->> 'cast'), ' AND ')
                          FROM unnest(_rd_link.sources, _rd_link.keys) AS x (s, k)))
           INTO _rd_count, _rd_found USING _rd_right, _rd_wrong;
        IF NOT _rd_found THEN
            RAISE EXCEPTION 'cannot merge into key % of %: % (%) of % does not fit it (it would be stored as another key)',
                _rd_right, reference_table, _rd_link.name, array_to_string(_rd_link.sources, ', '), _rd_link.fact
                USING ERRCODE = 'string_data_right_truncation';
        END IF;
        IF _rd_link.configured OR _rd_count > 0 THEN
            _rd_repointed := _rd_repointed || jsonb_build_object(_rd_link.name, _rd_count);
        END IF;
    END LOOP;

    PERFORM set_config('refdata.audit_action', 'merge', true), set_config('refdata.audit_domain', '', true),
            set_config('refdata.audit_detail', jsonb_build_object('merged_into', _rd_right, 'repointed', _rd_repointed)::text, true);
    EXECUTE format('DELETE FROM %s AS t USING jsonb_populate_record(NULL::%s, $1) AS r WHERE %s',
                   reference_table, reference_table, _rd_match)
       USING _rd_wrong;
    PERFORM set_config('refdata.audit_action', '', true), set_config('refdata.audit_detail', '', true);
    {{ session_kept() | indent(4) }}
    RETURN jsonb_build_object('merged_into', _rd_right, 'repointed', _rd_repointed);
END
$refdata$;
REVOKE ALL ON FUNCTION refdata.review_merge(text, jsonb, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION refdata.review_merge(text, jsonb, jsonb) IS 'refdata: re-points facts from a wrong reference row to the right one and deletes the wrong one';
