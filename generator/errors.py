"""Errors the CLI turns into one line and an exit code."""


class RefdataError(Exception):
    """Any failure the user should read as one line (exit code 1)."""

    exit_code = 1


class InputError(RefdataError):
    """Invalid input: config, arguments, data file (exit code 2)."""

    exit_code = 2
