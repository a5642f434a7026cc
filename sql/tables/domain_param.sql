-- Config values the generated functions need at run time (blank markers,
-- defaults, templates). Kept as data, written with bound parameters, so no
-- config value is ever part of a function body.
CREATE TABLE IF NOT EXISTS refdata.domain_param (
    domain      text PRIMARY KEY,
    params      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE refdata.domain_param IS 'refdata: run-time config values per domain, written by refdata apply';
REVOKE ALL ON TABLE refdata.domain_param FROM PUBLIC;
