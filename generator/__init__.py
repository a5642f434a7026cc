"""refdata: generate in-database backfill of missing reference rows from a YAML config."""
