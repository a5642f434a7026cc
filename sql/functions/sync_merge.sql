{%- from "macros/session_kept.sql.j2" import session_kept -%}
-- The merge of one synced table, the same for every source: the foreign
-- table of the fdw path (p_columns NULL) or the staging table the client
-- path filled (p_columns: the target columns it staged). Runs in the
-- caller's transaction; raises (changing nothing) on duplicate or NULL
-- keys and on values that do not fit, naming key and column.
CREATE OR REPLACE FUNCTION refdata.sync_merge(
    p_name text, p_columns text[] DEFAULT NULL,
    OUT inserted bigint, OUT updated bigint, OUT promoted bigint, OUT unchanged bigint,
    OUT deleted bigint, OUT kept bigint, OUT watermark timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET standard_conforming_strings = on  -- '\_rd\_%' below means what it says in any session
AS $refdata$
DECLARE
    p refdata.sync_table;
    target text;
    source text;
    pairs text[];          -- source, target, source, target, ...
    targets text[];
    exprs text[];          -- per pair: the source value as the target column takes it
    bits text[] := '{}';   -- source columns (lower case) that are MySQL BIT
    remote text[];         -- a MySQL foreign table's database and table
    catalog regclass;
    tcols text;
    scols text;
    vals text[];
    keymatch text;
    keylabel_n text;
    keylabel_s text;
    upd text := 'NULL::timestamptz';
    since timestamptz;
    filter text := '';
    refs text := 'false';
    sets text;
    changed text;
    label text;
    k text;
    c record;
    r record;
    n bigint;
    msg text;
    matched bigint;
    total bigint;
    to_promote bigint;
    to_update bigint;
    dupcheck text;
    key_index boolean;
    nulls boolean;
    keyed boolean;
    empty boolean;
BEGIN
    SELECT * INTO p FROM refdata.sync_table AS s WHERE s.name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no synced table named %; run refdata apply', p_name USING ERRCODE = 'undefined_object';
    END IF;
    target := format('%I.%I', p.target_schema, p.target_table);
    IF p_columns IS NULL THEN
        IF p.source_table IS NULL OR to_regclass(format('%I.%I', p.source_schema, p.source_table)) IS NULL THEN
            RAISE EXCEPTION 'its source is not set up (no foreign table): set the connection environment and run refdata apply'
                USING ERRCODE = 'fdw_unable_to_establish_connection';
        END IF;
        source := format('%I.%I', p.source_schema, p.source_table);
        pairs := ARRAY(SELECT x FROM jsonb_array_elements(p.columns) AS e(pair),
                       LATERAL (VALUES (pair ->> 0), (pair ->> 1)) AS v(x));
        IF jsonb_array_length(p.columns) = 0 THEN
            -- No columns configured: every source column the target has by name.
            FOR c IN SELECT sa.attname::text AS name FROM pg_attribute AS sa
                     JOIN pg_attribute AS ta ON ta.attrelid = target::regclass AND ta.attname = sa.attname
                                            AND ta.attnum > 0 AND NOT ta.attisdropped
                     WHERE sa.attrelid = source::regclass AND sa.attnum > 0 AND NOT sa.attisdropped
                       AND sa.attname NOT IN ('_source', '_needs_review', '_derived_from_domain', '_derived_at')
                       AND sa.attname NOT LIKE '\_rd\_%'
                     ORDER BY sa.attnum LOOP
                pairs := pairs || ARRAY[c.name, c.name];
            END LOOP;
        END IF;
        IF p.updated_column IS NOT NULL THEN
            upd := format('s.%I', p.updated_column);
            SELECT w.last_synced_at INTO since FROM refdata.sync_watermark AS w WHERE w.table_name = p_name;
            IF since IS NOT NULL THEN
                filter := format(' WHERE s.%I %s $1', p.updated_column, CASE p.updated_op WHEN '>' THEN '>' ELSE '>=' END);
            END IF;
        END IF;
    ELSE
        source := format('%I.%I', p.stage_schema, p.stage_table);
        FOREACH k IN ARRAY p_columns LOOP
            IF k LIKE '\_rd\_%' OR NOT EXISTS (
                SELECT FROM pg_attribute AS a
                WHERE a.attrelid = source::regclass AND a.attname = k AND a.attnum > 0 AND NOT a.attisdropped) THEN
                RAISE EXCEPTION 'column % is not a column of %', k, target USING ERRCODE = 'undefined_column';
            END IF;
            pairs := pairs || ARRAY[k, k];
        END LOOP;
        upd := 'CAST(s."_rd_updated_at" AS timestamptz)';
    END IF;
    targets := ARRAY(SELECT pairs[i + 1] FROM generate_series(1, array_length(pairs, 1), 2) AS i ORDER BY i);
    FOREACH k IN ARRAY p.keys LOOP
        IF NOT k = ANY (targets) THEN
            RAISE EXCEPTION 'key column % is not in the source', k USING ERRCODE = 'undefined_column';
        END IF;
    END LOOP;

    -- A MySQL foreign table reads bytea (see refdata.sync_foreign_table);
    -- which of its columns are BIT, MySQL's own catalog says, at each sync.
    SELECT ARRAY[(SELECT substr(o, 8) FROM unnest(ft.ftoptions) AS o WHERE o LIKE 'dbname=%'),
                 (SELECT substr(o, 12) FROM unnest(ft.ftoptions) AS o WHERE o LIKE 'table\_name=%')],
           (SELECT ct.ftrelid::regclass FROM pg_foreign_table AS ct
             WHERE ct.ftserver = ft.ftserver AND ct.ftoptions @> ARRAY['dbname=information_schema', 'table_name=COLUMNS']
             LIMIT 1)
      INTO remote, catalog
      FROM pg_foreign_table AS ft JOIN pg_foreign_server AS fs ON fs.oid = ft.ftserver
      JOIN pg_foreign_data_wrapper AS w ON w.oid = fs.srvfdw
     WHERE ft.ftrelid = source::regclass AND w.fdwname = 'mysql_fdw';
    IF catalog IS NOT NULL THEN
        EXECUTE format('SELECT coalesce(array_agg(lower(c.column_name)), ''{}'') FROM %s AS c '
                       'WHERE c.table_schema = $1 AND c.table_name = $2 AND c.data_type = ''bit''', catalog)
            INTO bits USING remote[1], remote[2];
    END IF;

    -- A text source value (the client path stages text) becomes its target
    -- type through that type's input function; string types take it as it
    -- is, so a value too long still fails instead of being cut. A MySQL
    -- value's bytes are that text in UTF-8, checked (bad bytes fail naming
    -- key and column), or into bytea the bytes themselves; a BIT is its
    -- number, as the client path stages it.
    exprs := ARRAY(
        SELECT CASE WHEN lower(pairs[i]) = ANY (bits)
                    THEN format('CAST(CAST(refdata.sync_bit(s.%I) AS text) AS %s)', pairs[i],
                                format_type(ta.atttypid, ta.atttypmod))
                    WHEN sa.atttypid = 'bytea'::regtype AND bt.oid <> 'bytea'::regtype AND bt.typcategory = 'S'
                    THEN format('convert_from(s.%I, ''UTF8'')', pairs[i])
                    WHEN sa.atttypid = 'bytea'::regtype AND bt.oid <> 'bytea'::regtype
                    THEN format('CAST(convert_from(s.%I, ''UTF8'') AS %s)', pairs[i],
                                format_type(ta.atttypid, ta.atttypmod))
                    WHEN sa.atttypid = 'text'::regtype AND bt.typcategory <> 'S'
                    THEN format('CAST(s.%I AS %s)', pairs[i], format_type(ta.atttypid, ta.atttypmod))
                    ELSE format('s.%I', pairs[i]) END
          FROM generate_series(1, array_length(pairs, 1), 2) AS i
          JOIN pg_attribute AS ta ON ta.attrelid = target::regclass AND ta.attname = pairs[i + 1] AND NOT ta.attisdropped
          JOIN pg_type AS tt ON tt.oid = ta.atttypid
          JOIN pg_type AS bt ON bt.oid = CASE WHEN tt.typtype = 'd' THEN tt.typbasetype ELSE tt.oid END
          JOIN pg_attribute AS sa ON sa.attrelid = source::regclass AND sa.attname = pairs[i] AND NOT sa.attisdropped
         ORDER BY i);
    IF coalesce(array_length(exprs, 1), 0) <> array_length(pairs, 1) / 2 THEN
        RAISE EXCEPTION 'column %: not in the source %, or not a column of %',
            (SELECT string_agg(pairs[i], ', ') FROM generate_series(1, array_length(pairs, 1), 2) AS i
              WHERE NOT EXISTS (SELECT FROM pg_attribute AS sa WHERE sa.attrelid = source::regclass
                                AND sa.attname = pairs[i] AND NOT sa.attisdropped)
                 OR NOT EXISTS (SELECT FROM pg_attribute AS ta WHERE ta.attrelid = target::regclass
                                AND ta.attname = pairs[i + 1] AND NOT ta.attisdropped)),
            source, target USING ERRCODE = 'undefined_column';
    END IF;
    SELECT string_agg(format('%I', pairs[i + 1]), ', ' ORDER BY i) INTO tcols
      FROM generate_series(1, array_length(pairs, 1), 2) AS i;
    scols := array_to_string(exprs, ', ');
    vals := ARRAY(SELECT t2 FROM unnest(targets) WITH ORDINALITY AS x(t2, o) WHERE NOT t2 = ANY (p.keys) ORDER BY o);
    SELECT string_agg(format('t.%I = n.%I', k2, k2), ' AND '),
           string_agg(format('%L || ''='' || coalesce(n.%I::text, ''NULL'')', k2, k2), ' || '', '' || ')
      INTO keymatch, keylabel_n
      FROM unnest(p.keys) AS k2;
    SELECT string_agg(format(CASE WHEN sa.atttypid = 'bytea'::regtype
                                  THEN '%L || ''='' || coalesce(refdata.sync_label(s.%I), ''NULL'')'
                                  ELSE '%L || ''='' || coalesce(s.%I::text, ''NULL'')' END,
                             pairs[i + 1], pairs[i]), ' || '', '' || ')
      INTO keylabel_s
      FROM generate_series(1, array_length(pairs, 1), 2) AS i
      JOIN pg_attribute AS sa ON sa.attrelid = source::regclass AND sa.attname = pairs[i] AND NOT sa.attisdropped
     WHERE pairs[i + 1] = ANY (p.keys);

    -- An index of the target's, checked at once, that keeps the keys unique.
    key_index := EXISTS (
        SELECT FROM pg_index AS i
         WHERE i.indrelid = target::regclass AND i.indisunique AND i.indimmediate AND i.indisvalid
           AND i.indpred IS NULL AND i.indexprs IS NULL
           AND ARRAY(SELECT a.attname::text FROM unnest(i.indkey) AS u(attnum)
                       JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = u.attnum ORDER BY 1)
               = ARRAY(SELECT x FROM unnest(p.keys) AS x ORDER BY 1));

    -- Writers of the target (the backfill triggers too) wait; readers do not.
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', target);

    -- Into an empty table (a first sync) the source goes straight in, with
    -- no temporary copy: nothing is there to match, promote, update or
    -- delete, and the target itself refuses what the checks below name (its
    -- key index a duplicate key, NOT NULL a NULL key or value, a column's
    -- type a value that does not fit). On such a refusal nothing of this
    -- insert stays and the source is read again the way below, which names
    -- key and column. Not for an incremental table, whose watermark is the
    -- newest change time read.
    IF p.updated_column IS NULL AND key_index AND NOT EXISTS (
           SELECT FROM pg_attribute AS a
            WHERE a.attrelid = target::regclass AND a.attname = ANY (p.keys) AND NOT a.attnotnull) THEN
        EXECUTE format('SELECT NOT EXISTS (SELECT FROM %s)', target) INTO empty;
        IF empty THEN
            BEGIN
                PERFORM set_config('refdata.audit_action', 'sync', true), set_config('refdata.audit_domain', '', true);
                EXECUTE format('INSERT INTO %s AS t (%s, "_source", "_needs_review") '
                               'SELECT %s, ''authoritative'', false FROM %s AS s',
                               target, tcols, scols, source);
                GET DIAGNOSTICS inserted = ROW_COUNT;
                PERFORM set_config('refdata.audit_action', '', true);
                updated := 0; promoted := 0; unchanged := 0; deleted := 0; kept := 0;
                {{ session_kept() | indent(16) }}
                RETURN;
            EXCEPTION WHEN data_exception OR not_null_violation OR unique_violation THEN
                NULL;  -- named below
            END;
        END IF;
    END IF;

    DROP TABLE IF EXISTS pg_temp._rd_sync_new;
    EXECUTE format('CREATE TEMP TABLE _rd_sync_new ON COMMIT DROP AS SELECT %s, NULL::timestamptz AS "_rd_updated_at", '
                   'false AS "_rd_new" FROM %s AS t WITH NO DATA',
                   (SELECT string_agg(format('t.%I', pairs[i + 1]), ', ' ORDER BY i)
                      FROM generate_series(1, array_length(pairs, 1), 2) AS i), target);
    BEGIN
        EXECUTE format('INSERT INTO pg_temp._rd_sync_new (%s, "_rd_updated_at") SELECT %s, %s FROM %s AS s%s',
                       tcols, scols, upd, source, filter) USING since;
        GET DIAGNOSTICS total = ROW_COUNT;
    EXCEPTION WHEN data_exception THEN
        -- Which value does not fit: each column, row by row, with the same assignment.
        FOR c IN SELECT pairs[i] AS src, pairs[i + 1] AS tgt, exprs[(i + 1) / 2] AS expr
                   FROM generate_series(1, array_length(pairs, 1), 2) AS i ORDER BY i LOOP
            FOR r IN EXECUTE format('SELECT %s AS key, s.%I AS v FROM %s AS s%s', keylabel_s, c.src, source, filter) USING since LOOP
                BEGIN
                    EXECUTE format('INSERT INTO pg_temp._rd_sync_new (%I) SELECT %s FROM (SELECT $1 AS %I) AS s',
                                   c.tgt, c.expr, c.src) USING r.v;
                EXCEPTION WHEN data_exception THEN
                    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
                    RAISE EXCEPTION 'key %: column %: %', r.key, c.tgt, msg USING ERRCODE = 'data_exception';
                END;
            END LOOP;
        END LOOP;
        RAISE;
    END;

    -- NULL keys and NULLs in NOT NULL columns: one pass says whether there
    -- are any; only then is each column looked at, to name key and column.
    EXECUTE format('SELECT EXISTS (SELECT FROM pg_temp._rd_sync_new AS n WHERE %s)',
                   (SELECT string_agg(format('n.%I IS NULL', x), ' OR ')
                      FROM (SELECT unnest(p.keys)
                            UNION ALL
                            SELECT a.attname::text FROM pg_attribute AS a
                             WHERE a.attrelid = target::regclass AND a.attnotnull AND a.attname = ANY (vals)) AS u(x)))
      INTO nulls;
    IF nulls THEN
        FOREACH k IN ARRAY p.keys LOOP
            EXECUTE format('SELECT %s FROM pg_temp._rd_sync_new AS n WHERE n.%I IS NULL LIMIT 1', keylabel_n, k) INTO label;
            IF label IS NOT NULL THEN
                RAISE EXCEPTION 'key %: column %: the key is NULL in the source', label, k USING ERRCODE = 'not_null_violation';
            END IF;
        END LOOP;
        FOR c IN SELECT a.attname FROM pg_attribute AS a
                 WHERE a.attrelid = target::regclass AND a.attnotnull AND a.attname = ANY (vals) LOOP
            EXECUTE format('SELECT %s FROM pg_temp._rd_sync_new AS n WHERE n.%I IS NULL LIMIT 1', keylabel_n, c.attname) INTO label;
            IF label IS NOT NULL THEN
                RAISE EXCEPTION 'key %: column %: NULL in the source, but the column is NOT NULL in %', label, c.attname, target
                    USING ERRCODE = 'not_null_violation';
            END IF;
        END LOOP;
    END IF;
    -- The plans below estimate from the key columns alone (joins, grouping).
    EXECUTE format('ANALYZE pg_temp._rd_sync_new (%s)', (SELECT string_agg(format('%I', k2), ', ') FROM unnest(p.keys) AS k2));
    sets := (SELECT string_agg(format('%I = n.%I', v, v), ', ') FROM unnest(vals) AS v);
    changed := coalesce((SELECT format('ROW(%s) IS DISTINCT FROM ROW(%s)',
                                       string_agg(format('t.%I', v), ', '), string_agg(format('n.%I', v), ', '))
                         FROM unnest(vals) AS v), 'false');
    -- One join that writes nothing says which keys the target has and what
    -- each write below would touch, so a write with nothing to do is not
    -- run (a sync with nothing changed reads the target once). New keys
    -- are found before writing, so the insert never scans the table it is
    -- growing; they are marked only when some keys are new and some not (a
    -- sync into an empty table inserts every row, one of known keys none).
    EXECUTE format('SELECT count(*), count(*) FILTER (WHERE t."_source" = ''auto_derived''), '
                   'count(*) FILTER (WHERE t."_source" = ''authoritative'' AND %s) '
                   'FROM pg_temp._rd_sync_new AS n JOIN %s AS t ON %s', changed, target, keymatch)
      INTO matched, to_promote, to_update;
    -- Duplicate keys in the source, looked for by grouping every row; not
    -- when none of the keys is in the target yet and an index of the
    -- target's, checked at once, keeps them unique: its insert then fails on
    -- the first duplicate, and only then is the source grouped to name it.
    dupcheck := format('SELECT %s, count(*) FROM pg_temp._rd_sync_new AS n GROUP BY %s HAVING count(*) > 1 LIMIT 1',
                       keylabel_n, (SELECT string_agg(format('n.%I', k2), ', ') FROM unnest(p.keys) AS k2));
    keyed := matched = 0 AND key_index;
    IF NOT keyed THEN
        EXECUTE dupcheck INTO label, n;
        IF label IS NOT NULL THEN
            RAISE EXCEPTION 'key %: column %: the key occurs % times in the source', label, array_to_string(p.keys, ', '), n
                USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    IF matched > 0 AND matched < total THEN
        EXECUTE format('UPDATE pg_temp._rd_sync_new AS n SET "_rd_new" = true WHERE NOT EXISTS (SELECT FROM %s AS t WHERE %s)',
                       target, keymatch);
    END IF;
    -- The audit log names these writes as the sync's.
    PERFORM set_config('refdata.audit_action', 'sync', true), set_config('refdata.audit_domain', '', true);
    promoted := 0;
    IF to_promote > 0 THEN
        -- Auto-derived rows the source knows become authoritative; where they came from stays as history.
        EXECUTE format('UPDATE %s AS t SET %s"_source" = ''authoritative'', "_needs_review" = false '
                       'FROM pg_temp._rd_sync_new AS n WHERE %s AND t."_source" = ''auto_derived''',
                       target, coalesce(sets || ', ', ''), keymatch);
        GET DIAGNOSTICS promoted = ROW_COUNT;
    END IF;
    updated := 0;
    IF sets IS NOT NULL AND to_update > 0 THEN
        -- Only rows whose values really differ: unchanged rows get no new version.
        EXECUTE format('UPDATE %s AS t SET %s FROM pg_temp._rd_sync_new AS n WHERE %s AND t."_source" = ''authoritative'' AND %s',
                       target, sets, keymatch, changed);
        GET DIAGNOSTICS updated = ROW_COUNT;
    END IF;
    unchanged := matched - promoted - updated;
    inserted := 0;
    IF matched < total THEN
        BEGIN
            EXECUTE format('INSERT INTO %s AS t (%s, "_source", "_needs_review") '
                           'SELECT %s, ''authoritative'', false FROM pg_temp._rd_sync_new AS n%s',
                           target, tcols, (SELECT string_agg(format('n.%I', pairs[i + 1]), ', ' ORDER BY i)
                                             FROM generate_series(1, array_length(pairs, 1), 2) AS i),
                           CASE WHEN matched > 0 THEN ' WHERE n."_rd_new"' ELSE '' END);
            GET DIAGNOSTICS inserted = ROW_COUNT;
        EXCEPTION WHEN unique_violation THEN
            IF keyed THEN
                EXECUTE dupcheck INTO label, n;
                IF label IS NOT NULL THEN
                    RAISE EXCEPTION 'key %: column %: the key occurs % times in the source', label,
                        array_to_string(p.keys, ', '), n USING ERRCODE = 'unique_violation';
                END IF;
            END IF;
            RAISE;
        END;
    END IF;

    deleted := 0;
    kept := 0;
    IF p.mode = 'delete_insert' THEN
        -- A row facts (or other tables) still name stays: per data_sources.yml and per declared FK.
        FOR c IN
            SELECT format('%I.%I', e ->> 'schema', e ->> 'table') AS rel,
                   (SELECT string_agg(format('f.%I = t.%I', col ->> 0, col ->> 1), ' AND ')
                      FROM jsonb_array_elements(e -> 'columns') AS col) AS cond
              FROM jsonb_array_elements(p.refs) AS e
            UNION ALL
            SELECT con.conrelid::regclass::text,
                   (SELECT string_agg(format('f.%I = t.%I', fa.attname, ta.attname), ' AND ')
                      FROM unnest(con.conkey, con.confkey) AS u(fk, tk)
                      JOIN pg_attribute AS fa ON fa.attrelid = con.conrelid AND fa.attnum = u.fk
                      JOIN pg_attribute AS ta ON ta.attrelid = con.confrelid AND ta.attnum = u.tk)
              FROM pg_constraint AS con
             WHERE con.contype = 'f' AND con.confrelid = target::regclass
        LOOP
            refs := refs || format(' OR EXISTS (SELECT FROM %s AS f WHERE %s)', c.rel, c.cond);
        END LOOP;
        EXECUTE format('SELECT count(*) FROM %s AS t WHERE NOT EXISTS (SELECT FROM pg_temp._rd_sync_new AS n WHERE %s) AND (%s)',
                       target, keymatch, refs) INTO kept;
        EXECUTE format('DELETE FROM %s AS t WHERE NOT EXISTS (SELECT FROM pg_temp._rd_sync_new AS n WHERE %s) AND NOT (%s)',
                       target, keymatch, refs);
        GET DIAGNOSTICS deleted = ROW_COUNT;
    END IF;
    PERFORM set_config('refdata.audit_action', '', true);
    IF p.updated_column IS NOT NULL THEN
        SELECT max(n."_rd_updated_at") INTO watermark FROM pg_temp._rd_sync_new AS n;
    END IF;
    DROP TABLE pg_temp._rd_sync_new;
    {{ session_kept() | indent(4) }}
END
$refdata$;
COMMENT ON FUNCTION refdata.sync_merge(text, text[]) IS 'refdata: merges one synced table from its source (see refdata.sync_table)';
REVOKE ALL ON FUNCTION refdata.sync_merge(text, text[]) FROM PUBLIC;
