-- Home of everything refdata creates besides tracking columns and triggers.
CREATE SCHEMA IF NOT EXISTS refdata;
COMMENT ON SCHEMA refdata IS 'refdata: generated backfill functions, settings and review objects';
