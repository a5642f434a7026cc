"""The command line as users meet it: one grammar for every command."""

from __future__ import annotations

import pytest

from generator.cli import COMMANDS

CONFIG = """
domains:
  facts:
    fact_schema: business
    fact_table: 规模明细
    foreign_keys:
      - name: fk_plan
        source_column: 计划代码
        target_schema: mapping
        target_table: 年金计划
        target_key: 年金计划号
        defaults: {计划全称: "(待补充)", 计划状态: 待审核}
"""


def test_global_options_work_before_and_after_the_command(cli, dsn, sample_db, write_config):
    path = write_config(CONFIG)
    before = cli("--config", str(path), "--db", dsn, "validate", db=None)
    after = cli("validate", "--db", dsn, "--config", str(path), db=None)
    assert before.returncode == 0, before.stderr
    assert after.returncode == 0, after.stderr
    assert before.stdout == after.stdout
    assert "catalog: ok" in after.stdout
    mixed = cli("--config", str(path), "apply", "--db", dsn, db=None)
    assert mixed.returncode == 0, mixed.stderr


def test_debug_after_the_command_shows_the_traceback(cli, write_config):
    path = write_config("domains: {}\n")
    quiet = cli("validate", "--config", str(path), db=None)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    loud = cli("validate", "--config", str(path), "--debug", db=None)
    assert "Traceback" in loud.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_lists_the_global_options(cli, command):
    result = cli(command, "--help", db=None)
    assert result.returncode == 0, result.stderr
    for option in ("--config PATH", "--db DSN", "--debug"):
        assert option in result.stdout, (command, option)
