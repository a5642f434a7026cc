-- Tables no longer in reference_sync.yml are no longer synced (their runs stay).
DELETE FROM refdata.sync_table WHERE NOT (name = ANY (ARRAY(SELECT jsonb_array_elements_text(%(names)s::jsonb))));
