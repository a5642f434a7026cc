-- bin/bench's hard case: five foreign keys (one composite), a three-level
-- parent chain (desk -> branch -> region) and a fact table partitioned by month.
CREATE SCHEMA hard;

CREATE TABLE hard.region (
    code text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE hard.branch (
    code   text PRIMARY KEY,
    region text NOT NULL REFERENCES hard.region,
    name   text
);

CREATE TABLE hard.desk (
    code   text PRIMARY KEY,
    branch text NOT NULL REFERENCES hard.branch,
    name   text
);

CREATE TABLE hard.product (
    code text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE hard.account (
    bank   text,
    number text,
    holder text,
    PRIMARY KEY (bank, number)
);

CREATE TABLE hard.trade (
    id           bigint GENERATED ALWAYS AS IDENTITY,
    day          date NOT NULL,
    region       text REFERENCES hard.region,
    branch       text REFERENCES hard.branch,
    desk         text REFERENCES hard.desk,
    desk_name    text,
    product      text REFERENCES hard.product,
    product_name text,
    bank         text,
    number       text,
    holder       text,
    amount       numeric(20, 2),
    FOREIGN KEY (bank, number) REFERENCES hard.account
) PARTITION BY RANGE (day);
CREATE TABLE hard.trade_2025_10 PARTITION OF hard.trade FOR VALUES FROM ('2025-10-01') TO ('2025-11-01');
CREATE TABLE hard.trade_2025_11 PARTITION OF hard.trade FOR VALUES FROM ('2025-11-01') TO ('2025-12-01');
CREATE TABLE hard.trade_2025_12 PARTITION OF hard.trade FOR VALUES FROM ('2025-12-01') TO ('2026-01-01');
CREATE INDEX ON hard.trade (day);
