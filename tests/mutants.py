"""bin/mutants: the mutation harness. Each mutant in tests/mutants.yml is a
small wrong change (`find` -> `replace` in `file`) that users would suffer
from (`why`); the test selection `tests` must fail on it.

The checkout (tracked and untracked-but-not-ignored files, as they are in
the working tree) is copied once to a scratch folder; every mutant is applied
there, its selection runs with this venv's pytest against the test cluster
bin/test started, and the file is put back. The real tree is never touched.

A mutant is
  killed    its selection failed (or timed out),
  survived  its selection passed: the tests cannot see that wrong change,
  stale     `find` does not occur exactly once in `file` any more,
  invalid   its selection is empty or names no test.
Before any mutant, all selections run once unmutated and must pass (a
selection that fails anyway would "kill" every mutant). Exit 0 only when
every mutant was killed.

Usage: bin/mutants [-j N] [--list] [WORD ...]  (WORDs keep only the mutants
whose file, selection or why contains one of them).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LIST = ROOT / "tests" / "mutants.yml"
TIMEOUT = 300  # seconds per selection: a mutant that makes a test hang is killed by the clock
PYTEST = ["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--no-header", "-W", "ignore"]


@dataclass
class Mutant:
    number: int
    file: str
    find: str
    replace: str
    tests: list[str]
    why: str
    result: str = ""
    detail: str = ""
    seconds: float = 0.0


class _Loader(yaml.SafeLoader):
    """Refuses a key given twice in one entry: a merge that drops a `- file:`
    line joins two mutants into one, and the first would silently vanish."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice in one entry", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_list(path: Path) -> list[Mutant]:
    try:
        entries = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or []
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise SystemExit(f"{path}:{mark.line + 1 if mark else ''}: invalid YAML: {getattr(e, 'problem', e)}") from None
    mutants = []
    for i, e in enumerate(entries, start=1):
        if not (isinstance(e, dict) and all(e.get(k) for k in ("file", "find", "tests", "why"))
                and isinstance(e["find"], str) and isinstance(e.get("replace"), str)):
            raise SystemExit(f"{path}: mutant {i}: needs file, find (not empty), replace (text), tests, why")
        tests = e["tests"] if isinstance(e["tests"], list) else shlex.split(e["tests"])
        if any(t.startswith("-") for t in tests):
            raise SystemExit(f"{path}: mutant {i}: tests are node ids (tests/test_x.py::test_y), not options")
        mutants.append(Mutant(i, e["file"], e["find"], e["replace"], tests, " ".join(str(e["why"]).split())))
    return mutants


def copy_checkout(dest: Path) -> None:
    """The working tree as git sees it (tracked and new files, not ignored ones)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    if (ROOT / ".venv").is_dir():  # bin/ scripts a test runs find the environment set up already
        (dest / ".venv").symlink_to(ROOT / ".venv")


def pytest(scratch: Path, tests: list[str]) -> tuple[int, str, float]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(scratch))
    env.setdefault("REFDATA_TEST_HOME", str(ROOT / ".refdata" / "test"))  # the running test cluster
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", *PYTEST, *tests], cwd=scratch, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {TIMEOUT} s", time.monotonic() - started
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, "\n".join(lines[-15:]), time.monotonic() - started


def outcome(output: str) -> str:
    """pytest's closing line ("1 failed in 2.1s"), to tell a failed assertion from an error."""
    last = output.strip().splitlines()[-1] if output.strip() else ""
    return last.strip("= ").rsplit(" in ", 1)[0]


def check_imports(scratch: Path) -> None:
    """The scratch copy's package must be the one imported, not the checkout's."""
    env = dict(os.environ, PYTHONPATH=str(scratch))
    found = subprocess.run([sys.executable, "-c", "import generator; print(generator.__file__)"],
                           cwd=scratch, env=env, capture_output=True, text=True).stdout.strip()
    if not found.startswith(str(scratch)):
        raise SystemExit(f"bin/mutants: the scratch copy imports generator from {found or '?'}, not {scratch}")


def run_mutant(m: Mutant, scratch: Path) -> Mutant:
    target = scratch / m.file
    if not target.is_file():
        m.result, m.detail = "stale", f"{m.file} does not exist"
        return m
    original = target.read_text(encoding="utf-8")
    count = original.count(m.find)
    if count != 1:
        m.result, m.detail = "stale", f"find occurs {count} times in {m.file}"
        return m
    target.write_text(original.replace(m.find, m.replace), encoding="utf-8")
    try:
        code, output, m.seconds = pytest(scratch, m.tests)
    finally:
        target.write_text(original, encoding="utf-8")
    if code in (1, 2, -1):  # tests failed, collection broke, or hung (each says which below)
        m.result, m.detail = "killed", output
    elif code == 0:
        m.result, m.detail = "survived", output
    else:
        m.result, m.detail = "invalid", f"pytest exit {code}: {output}"
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bin/mutants", description=__doc__.split("\n\n")[0])
    ap.add_argument("words", nargs="*", help="run only mutants whose file, tests or why contain one of these")
    ap.add_argument("-j", "--jobs", type=int, default=min(4, os.cpu_count() or 1),
                    help="mutants run at once, each in its own copy (default: CPUs, at most 4)")
    ap.add_argument("--list", action="store_true", help="list the mutants and stop")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the test output of killed mutants too")
    args = ap.parse_args(argv)

    mutants = read_list(LIST)
    if args.words:
        mutants = [m for m in mutants
                   if any(w in f"{m.file} {' '.join(m.tests)} {m.why}" for w in args.words)]
    if args.list:
        for m in mutants:
            print(f"{m.number:>3}  {m.file}  {' '.join(m.tests)}\n     {m.why}")
        return 0
    if not mutants:
        print("bin/mutants: no mutants selected", file=sys.stderr)
        return 1

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="refdata-mutants-") as tmp:
        copies = []
        for j in range(max(1, min(args.jobs, len(mutants)))):
            copy = Path(tmp) / f"copy{j}"
            copy_checkout(copy)
            copies.append(copy)
        check_imports(copies[0])

        selections = list(dict.fromkeys(t for m in mutants for t in m.tests))
        shares = [selections[j::len(copies)] for j in range(len(copies))]
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(copies)) as pool:
            # a share left empty (fewer selections than copies) would run every test
            runs = list(pool.map(pytest, *zip(*[(c, s) for c, s in zip(copies, shares) if s])))
        failed = [output for code, output, _ in runs if code != 0]
        print(f"unmutated: {len(selections)} selection(s) {'FAIL' if failed else 'pass'} "
              f"({time.monotonic() - t0:.0f} s)")
        if failed:
            print("\n".join(failed))
            print("bin/mutants: the selections must pass before mutants can be judged", file=sys.stderr)
            return 1

        free = list(copies)

        def job(m: Mutant) -> Mutant:
            scratch = free.pop()
            try:
                return run_mutant(m, scratch)
            finally:
                free.append(scratch)

        with ThreadPoolExecutor(max_workers=len(copies)) as pool:
            for m in pool.map(job, mutants):
                how = f" ({outcome(m.detail)})" if m.result == "killed" else ""
                print(f"{m.number:>3}  {m.result:<8} {m.seconds:>5.1f} s  {m.file}: {m.why}{how}", flush=True)
                if m.result != "killed" or args.verbose:
                    for line in m.detail.splitlines():
                        print(f"          {line}")

    bad = [m for m in mutants if m.result != "killed"]
    counts = {r: sum(m.result == r for m in mutants) for r in ("killed", "survived", "stale", "invalid")}
    print(f"{len(mutants)} mutants: " + ", ".join(f"{n} {r}" for r, n in counts.items() if n)
          + f" ({time.monotonic() - started:.0f} s)")
    for m in bad:
        print(f"bin/mutants: mutant {m.number} {m.result}: {m.file}: {m.why}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
