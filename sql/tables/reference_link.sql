-- Every configured foreign key as data: which fact columns name which
-- reference table's key. The review functions (approve, import, merge,
-- export) read it to find key columns and the fact rows to re-point;
-- written by refdata apply.
CREATE TABLE IF NOT EXISTS refdata.reference_link (
    domain          text NOT NULL,
    foreign_key     text NOT NULL,
    fact_schema     name NOT NULL,
    fact_table      name NOT NULL,
    source_columns  name[] NOT NULL,
    target_schema   name NOT NULL,
    target_table    name NOT NULL,
    key_columns     name[] NOT NULL,
    PRIMARY KEY (domain, foreign_key)
);
COMMENT ON TABLE refdata.reference_link IS 'refdata: configured foreign keys (fact columns -> reference table key), written by refdata apply';
REVOKE ALL ON TABLE refdata.reference_link FROM PUBLIC;
