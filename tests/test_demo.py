"""The main job end to end: `refdata demo` against a real server."""

import re


def test_demo_prints_authoritative_and_derived_counts(cli, dsn):
    result = cli("demo", db=dsn)
    assert result.returncode == 0, result.stderr
    rows = dict(
        (m.group(1), (int(m.group(2)), int(m.group(3)), int(m.group(4))))
        for m in re.finditer(r"^(mapping\.\S+)\s+(\d+)\s+(\d+)\s+(\d+)$", result.stdout, re.M)
    )
    assert set(rows) == {"mapping.年金计划", "mapping.组合计划", "mapping.产品线", "mapping.组织架构"}
    for table, (authoritative, derived, review) in rows.items():
        assert authoritative > 0, table
        assert derived > 0, table
        assert review == derived, table
