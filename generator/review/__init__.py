"""Review and observability over a database refdata has been applied to.

In: a connection (and, for thresholds, the config's `observability`
section). Out: CSV files of pending rows and their reviewed round trip
(`export`), approvals and merges (`actions`), the terminal tables and the
threshold check (`quality`), and a self-contained HTML page (`report`).
Every write goes through the SQL functions in schema refdata
(review_approve, review_merge, review_import), so what the CLI does a DBA
can do from psql, and a reviewer role needs no write rights on the tables.
"""
