"""The HTML report, opened in a real browser (headless Chromium): the page
renders its charts, with the bars where the data puts them."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

from helpers import shipped_single_file

from generator.config import PROJECT_ROOT
from test_backfill import apply_ok, insert_fact

SAMPLE_CONFIG = PROJECT_ROOT / "config" / "data_sources.yml"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of a non-interlaced 8-bit PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(b"".join(bytes(line[k * channels:k * channels + 3]) for k in range(width)))
        prev = line
    return width, height, rows


def count_color(rows: list[bytes], rgb: tuple[int, int, int]) -> int:
    needle = bytes(rgb)
    return sum(sum(1 for k in range(0, len(r), 3) if r[k:k + 3] == needle) for r in rows)


# The test's own instrument, added to a copy of the page: the boxes of each
# chart's labels and bars as the browser lays them out, and which intersect.
OVERLAPS = """<script>
const hits = [];
let labels = 0;
for (const svg of document.querySelectorAll("svg")) {
  const bars = [...svg.querySelectorAll("rect")].map(r => r.getBBox());
  for (const t of svg.querySelectorAll("text.label")) {
    labels++;
    const a = t.getBBox();
    if (bars.some(b => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height))
      hits.push(t.textContent);
  }
}
document.body.insertAdjacentHTML("beforeend",
  `<p id="measured" data-overlaps="${hits.join("; ")}" data-labels="${labels}"></p>`);
</script>"""


def test_report_renders_its_charts_in_chromium(sample_db, cli, write_config, tmp_path):
    assert CHROMIUM, "chromium is not installed (bin/test installs the Debian package)"
    strict = write_config(shipped_single_file() + (
        "observability:\n  tables:\n    mapping.年金计划: {thresholds: {pending_review: 1}}\n"), "strict.yml")
    apply_ok(cli, strict)
    for i in range(3):
        insert_fact(sample_db, 计划代码=f"P9000{i}", 组合代码=f"QT90000{i}", 机构代码="G001")
    sample_db.execute("""UPDATE mapping."年金计划" SET "_derived_at" = "_derived_at" - interval '2 days'
                         WHERE "年金计划号" = 'P90000'""")
    report = tmp_path / "report.html"
    result = cli("--config", str(strict), "report", "-o", str(report))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {report}"
    html = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html), "the page must not load anything"

    dom = chromium(tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr
    page = dom.stdout
    assert "<svg" in page and 'id="quality-chart"' in page and 'id="coverage-chart"' in page
    pending = re.findall(r'class="bar pending" data-table="mapping\.年金计划" data-value="(\d+)"', page)
    assert pending == ["3"]
    assert re.findall(r'class="bar activity" data-day="[^"]+" data-value="(\d+)"', page) == ["1", "5"]
    coverage = dict(re.findall(r'class="bar coverage" data-fk="(\w+)" data-value="([\d.]+)"', page))
    assert coverage["fk_organization"] == "1.0000" and "fk_plan" not in coverage  # no plan of the facts is authoritative
    assert "mapping.年金计划: pending_review 3 &gt; 1 (3 rows await review)" in page

    # Measured by the browser: no label's box reaches a bar's, in either chart.
    measured = tmp_path / "measured.html"
    measured.write_text(html.replace("</body>", OVERLAPS + "</body>"), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", measured.as_uri())
    assert dom.returncode == 0, dom.stderr
    found = re.search(r'data-overlaps="([^"]*)" data-labels="(\d+)"', dom.stdout)
    assert found and int(found.group(2)) >= 8, dom.stdout[-2000:]
    assert found.group(1) == "", f"labels overlapping bars: {found.group(1)}"

    shot = tmp_path / "report.png"
    taken = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1100,1000", report.as_uri())
    assert taken.returncode == 0 and shot.exists(), taken.stderr
    width, height, rows = read_png(shot)
    assert (width, height) == (1100, 1000)
    # the bars are painted: each series' colour covers a real area of the page
    assert count_color(rows, (0x2E, 0x7D, 0x32)) > 5000  # authoritative (and coverage at goal)
    assert count_color(rows, (0xEF, 0x6C, 0x00)) > 500   # pending review and activity
    assert count_color(rows, (0xC6, 0x28, 0x28)) > 50    # coverage below the goal, breach text
