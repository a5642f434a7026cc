"""refdata report: one self-contained HTML page (inline CSS and SVG, no
scripts, no external assets) with the quality of each reference table, the
coverage of each FK against the 90% goal, derivation activity over time and
the breached thresholds."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import psycopg

from ..config import Config
from ..errors import cannot_write
from . import quality

AUTHORITATIVE = "#2e7d32"
REVIEWED = "#1565c0"
PENDING = "#ef6c00"
BELOW_GOAL = "#c62828"
GOAL_LINE = "#212121"

STYLE = """
body { font-family: system-ui, "Noto Sans CJK SC", "Noto Sans", sans-serif; margin: 24px; color: #212121; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
.legend span { display: inline-block; margin-right: 16px; font-size: 13px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
svg text { font-size: 12px; fill: #212121; }
table { border-collapse: collapse; font-size: 13px; } td, th { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: left; }
.breach { color: #c62828; } .ok { color: #2e7d32; } .muted { color: #757575; font-size: 12px; }
"""


def _legend(items: list[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{escape(t)}</span>' for c, t in items) + "</div>"


def table_bars(rows: list[tuple]) -> str:
    """Per reference table a bar: authoritative | auto-derived, reviewed | auto-derived, pending review.
    Each label has a line of its own above its bar, so no label, however long, reaches a bar."""
    bar_w, text_w, row_h, bar_top, bar_h = 640, 320, 40, 18, 16
    height = row_h * len(rows) + 10
    parts = [f'<svg id="quality-chart" role="img" width="{bar_w + text_w}" height="{height}" '
             f'viewBox="0 0 {bar_w + text_w} {height}">']
    for i, r in enumerate(rows):
        _, _, label, total, auth, derived, pending = r[:7]
        y = 5 + i * row_h
        parts.append(f'<text class="label" x="0" y="{y + 12}">{escape(label)}</text>')
        x = 0.0
        reviewed = max(derived - pending, 0)
        for value, color, kind in ((auth, AUTHORITATIVE, "authoritative"), (reviewed, REVIEWED, "reviewed"),
                                   (pending, PENDING, "pending")):
            w = bar_w * value / total if total else 0
            if w > 0:
                parts.append(f'<rect class="bar {kind}" data-table="{escape(label)}" data-value="{value}" '
                             f'x="{x:.1f}" y="{y + bar_top}" width="{max(w, 1):.1f}" height="{bar_h}" fill="{color}"/>')
            x += w
        parts.append(f'<text x="{bar_w + 8}" y="{y + bar_top + 12}">{total} rows, {derived} derived, {pending} pending</text>')
    parts.append("</svg>")
    return "".join(parts)


def coverage_bars(rows: list[tuple]) -> str:
    """Per FK the authoritative share of the keys its facts use, with the 90% goal marked.
    Each label has a line of its own above its bar, so no label, however long, reaches a bar."""
    bar_w, text_w, row_h, bar_top, bar_h = 640, 320, 40, 18, 16
    height = row_h * len(rows) + 24
    goal_x = bar_w * quality.COVERAGE_GOAL
    parts = [f'<svg id="coverage-chart" role="img" width="{bar_w + text_w}" height="{height}" '
             f'viewBox="0 0 {bar_w + text_w} {height}">']
    for i, r in enumerate(rows):
        domain, fk, target, keys, auth, derived, missing, share = r
        y = 5 + i * row_h
        share = float(share) if share is not None else 0.0
        color = AUTHORITATIVE if share >= quality.COVERAGE_GOAL else BELOW_GOAL
        parts.append(f'<text class="label" x="0" y="{y + 12}">{escape(domain)}.{escape(fk)} → {escape(target)}</text>')
        parts.append(f'<rect x="0" y="{y + bar_top}" width="{bar_w}" height="{bar_h}" fill="#eeeeee"/>')
        if share > 0:
            parts.append(f'<rect class="bar coverage" data-fk="{escape(fk)}" data-value="{share:.4f}" x="0" '
                         f'y="{y + bar_top}" width="{max(bar_w * share, 1):.1f}" height="{bar_h}" fill="{color}"/>')
        parts.append(f'<text x="{bar_w + 8}" y="{y + bar_top + 12}">{share:.1%} of {keys} keys</text>')
        # the goal marked across each bar only, clear of the labels
        parts.append(f'<line class="goal" x1="{goal_x}" x2="{goal_x}" y1="{y + bar_top - 3}" y2="{y + bar_top + bar_h + 3}" '
                     f'stroke="{GOAL_LINE}" stroke-width="2" stroke-dasharray="4 3"/>')
    parts.append(f'<text id="coverage-goal" x="{goal_x - 30}" y="{height - 2}">goal 90%</text>')
    parts.append("</svg>")
    return "".join(parts)


def activity_bars(rows: list[tuple]) -> str:
    """Rows derived per day (all tables), one bar per day."""
    per_day: dict = defaultdict(int)
    for day, _table, _domain, derived in rows:
        per_day[day] += derived
    days = sorted(per_day)
    if not days:
        return '<p class="muted" id="activity-chart">nothing derived yet</p>'
    width, height, left, bottom = 960, 220, 50, 40
    top = max(per_day.values())
    step = (width - left) / len(days)
    bar = max(min(step * 0.8, 60), 2)
    parts = [f'<svg id="activity-chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f'<line x1="{left}" x2="{width}" y1="{height - bottom}" y2="{height - bottom}" stroke="#9e9e9e"/>',
             f'<text x="0" y="14">{top}</text><text x="0" y="{height - bottom}">0</text>']
    for i, day in enumerate(days):
        h = (height - bottom - 20) * per_day[day] / top
        x = left + i * step + (step - bar) / 2
        parts.append(f'<rect class="bar activity" data-day="{day}" data-value="{per_day[day]}" x="{x:.1f}" '
                     f'y="{height - bottom - h:.1f}" width="{bar:.1f}" height="{max(h, 1):.1f}" fill="{PENDING}"/>')
        if len(days) <= 16 or i % max(len(days) // 8, 1) == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - bottom + 16}">{day:%m-%d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def breach_list(found: list[quality.Breach]) -> str:
    if not found:
        return '<p class="ok" id="breaches">All thresholds hold.</p>'
    return '<ul id="breaches">' + "".join(f'<li class="breach">{escape(b.line())}</li>' for b in found) + "</ul>"


def render_html(config: Config, q: list[tuple], c: list[tuple], a: list[tuple], database: str) -> str:
    found = quality.breaches(config, q)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>refdata report</title><style>{STYLE}</style></head>
<body>
<h1>refdata: reference data quality</h1>
<p class="muted">{escape(database)} · {now}</p>
<h2>Breached thresholds</h2>
{breach_list(found)}
<h2>Reference tables</h2>
{_legend([(AUTHORITATIVE, "authoritative"), (REVIEWED, "auto-derived, reviewed"), (PENDING, "auto-derived, pending review")])}
{table_bars(q)}
<h2>Coverage of the keys facts use (authoritative share, goal 90%)</h2>
{_legend([(AUTHORITATIVE, "at or above the goal"), (BELOW_GOAL, "below the goal")])}
{coverage_bars(c)}
<h2>Derivation activity (rows auto-derived per day, UTC)</h2>
{activity_bars(a)}
</body></html>
"""


def write(conn: psycopg.Connection, config: Config, path: Path) -> Path:
    q, c, a = quality.quality(conn), quality.coverage(conn), quality.activity(conn)
    database = conn.info.dbname
    try:
        path.write_text(render_html(config, q, c, a, database), encoding="utf-8")
    except OSError as e:
        raise cannot_write(str(path), e) from None
    return path
