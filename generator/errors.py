"""Errors the CLI turns into one line and an exit code."""


class RefdataError(Exception):
    """Any failure the user should read as one line (exit code 1)."""

    exit_code = 1


class InputError(RefdataError):
    """Invalid input: config, arguments, data file (exit code 2)."""

    exit_code = 2


def cannot_write(place: str, e: OSError, then: str = "") -> InputError:
    """The one line for an output file that cannot be written (the system's
    reason, no errno): `place: cannot write: reason[; then]`."""
    return InputError(f"{place}: cannot write: {e.strerror or e}" + (f"; {then}" if then else ""))
