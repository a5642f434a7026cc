INSERT INTO refdata.sync_table AS p (name, target_schema, target_table, source_type, source_label, via, mode, keys,
                                     columns, source_schema, source_table, stage_schema, stage_table,
                                     updated_column, updated_op, refs)
VALUES (%(name)s, %(target_schema)s, %(target_table)s, %(source_type)s,
        concat(%(source_label)s::text, %(source_schema_label)s::text, %(source_table_label)s::text), %(via)s, %(mode)s,
        ARRAY(SELECT jsonb_array_elements_text(%(keys)s::jsonb)), %(columns)s::jsonb, %(source_schema)s, %(source_table)s, %(stage_schema)s, %(stage_table)s,
        %(updated_column)s, %(updated_op)s, %(refs)s::jsonb)
ON CONFLICT (name) DO UPDATE
    SET (target_schema, target_table, source_type, source_label, via, mode, keys, columns, source_schema,
         source_table, stage_schema, stage_table, updated_column, updated_op, refs, updated_at)
      = (EXCLUDED.target_schema, EXCLUDED.target_table, EXCLUDED.source_type, EXCLUDED.source_label, EXCLUDED.via,
         EXCLUDED.mode, EXCLUDED.keys, EXCLUDED.columns, EXCLUDED.source_schema, EXCLUDED.source_table,
         EXCLUDED.stage_schema, EXCLUDED.stage_table, EXCLUDED.updated_column, EXCLUDED.updated_op, EXCLUDED.refs, now())
    WHERE (p.target_schema, p.target_table, p.source_type, p.source_label, p.via, p.mode, p.keys, p.columns,
           p.source_schema, p.source_table, p.stage_schema, p.stage_table, p.updated_column, p.updated_op, p.refs)
          IS DISTINCT FROM
          (EXCLUDED.target_schema, EXCLUDED.target_table, EXCLUDED.source_type, EXCLUDED.source_label, EXCLUDED.via,
           EXCLUDED.mode, EXCLUDED.keys, EXCLUDED.columns, EXCLUDED.source_schema, EXCLUDED.source_table,
           EXCLUDED.stage_schema, EXCLUDED.stage_table, EXCLUDED.updated_column, EXCLUDED.updated_op, EXCLUDED.refs);
