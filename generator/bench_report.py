"""What the benchmarks (bench, bench_observability, bench_sync) share: their
progress lines, running variants interleaved, the median table with ratios,
PASS/MISS, and the command line's error handling.

Enters: callables that time one run of a variant, and their seconds.
Leaves: seconds per variant and run, text lines, an exit code.
"""

from __future__ import annotations

import os
import statistics
import sys
from typing import Callable

import psycopg

from .errors import RefdataError


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def interleaved(variants: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """Each variant's seconds per run: every round runs every variant once, in
    order, so a slow spell of a shared machine hits them all alike."""
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(1, repeat + 1):
        for name, once in variants.items():
            runs[name].append(once())
            progress(f"run {i}/{repeat} {name}: {runs[name][-1]:.2f} s (load average {load_average()})")
    return runs


def ratio_table(runs: dict[str, list[float]], base: str, base_label: str, rows: int | None = None) -> list[str]:
    """Median seconds, range, rows/s (when rows is given) and the ratio to the
    variant `base`, a line per variant."""
    med = {name: statistics.median(values) for name, values in runs.items()}
    width = max(len(n) for n in runs) + 2
    head = f"{'variant':<{width}} {'median s':>9} {'min..max s':>13}"
    head += f" {'rows/s':>10}" if rows else ""
    lines = [head + f" {'vs ' + base_label:>14}"]
    for name, values in runs.items():
        text = f"{name:<{width}} {med[name]:>9.2f} {f'{min(values):.2f}..{max(values):.2f}':>13}"
        text += f" {rows / med[name]:>10,.0f}" if rows else ""
        lines.append(text + f" {med[name] / med[base]:>13.2f}x")
    return lines


def main(run: Callable, parser_of: Callable, argv: list[str] | None = None) -> int:
    """A benchmark's command line: bad input exits 2, a database error 1, one line each."""
    try:
        return run(parser_of().parse_args(argv))
    except RefdataError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return e.exit_code
    except psycopg.Error as e:
        print(f"bench: error: {type(e).__name__}: {(e.diag.message_primary or str(e)).strip()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 1
