-- Sample schema with the production names: reference tables in "mapping",
-- the monthly pension asset figures in business."规模明细", FKs declared.
CREATE SCHEMA mapping;
CREATE SCHEMA business;

CREATE TABLE mapping."年金计划" (
    "年金计划号"   varchar(32) PRIMARY KEY,
    "计划全称"     text NOT NULL,
    "计划类型"     varchar(16),
    "客户名称"     text,
    "主拓机构代码" varchar(16),
    "计划状态"     varchar(8) NOT NULL
);

CREATE TABLE mapping."组合计划" (
    "组合代码"   varchar(32) PRIMARY KEY,
    "年金计划号" varchar(32) NOT NULL REFERENCES mapping."年金计划",
    "组合名称"   text,
    "组合类型"   varchar(16)
);

CREATE TABLE mapping."产品线" (
    "产品线代码" varchar(16) PRIMARY KEY,
    "产品线"     text NOT NULL,
    "业务大类"   text
);

CREATE TABLE mapping."组织架构" (
    "机构代码"     varchar(16) PRIMARY KEY,
    "机构"         text,
    "上级机构代码" varchar(16)
);

CREATE TABLE business."规模明细" (
    "id"           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "月度"         date NOT NULL,
    "业务类型"     text,
    "计划类型"     varchar(16),
    "计划代码"     varchar(32) REFERENCES mapping."年金计划",
    "计划名称"     text,
    "组合类型"     varchar(16),
    "组合代码"     varchar(32) REFERENCES mapping."组合计划",
    "组合名称"     text,
    "客户名称"     text,
    "期初资产规模" numeric(20, 2),
    "期末资产规模" numeric(20, 2),
    "供款"         numeric(20, 2),
    "投资收益"     numeric(20, 2),
    "产品线代码"   varchar(16) REFERENCES mapping."产品线",
    "机构代码"     varchar(16) REFERENCES mapping."组织架构",
    "机构名称"     text
);
CREATE INDEX ON business."规模明细" ("月度");
