-- Staging tables for bulk loads: scratch space, never the truth.
CREATE SCHEMA IF NOT EXISTS refdata_stage;
COMMENT ON SCHEMA refdata_stage IS 'refdata: UNLOGGED staging tables of the bulk load path';
