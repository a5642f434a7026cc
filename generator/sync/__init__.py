"""Reference sync: authoritative rows from legacy systems into reference tables.

Enters: `reference_sync.yml` (config.SyncConfig), the connection settings its
`connection_env_prefix` names in the environment, and a database refdata
applies to. Leaves: SQL objects in schema `refdata` (render: sync tables,
merge functions, foreign servers, user mappings, foreign tables), merged
reference rows with a `refdata.sync_run` row per table and run (run), and a
pg_cron job, crontab line or systemd timer (schedule).

- `connection`: settings from the environment; passwords never leave it except
  as bound parameters.
- `render`: the statements `refdata apply` adds for the sync config.
- `sources`: the client path's readers (MySQL, PostgreSQL, config files).
- `run`: `refdata sync`; `schedule`: `refdata schedule`.
"""
