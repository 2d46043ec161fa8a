"""Fault injection (issue 20): bad input, hub faults, kills and races against the real code paths.

Categories, one file each: (a) cli, (b) inputs, (c) hub, (d) kill, (e) concurrent, (f) names. Every case
asserts its own bar (exit 2 with one line and no traceback for a user error, a named error instead of a
verdict that looks valid, nothing written outside the target); the table at the end of the session counts
the cases per category and their failures, which is the issue's closing note.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path

import pytest

from zoo.cli import main

CATEGORIES = {"cli": "(a) CLI verbs x bad inputs", "inputs": "(b) families x bad tensors",
              "hub": "(c) hub faults + repair", "kill": "(d) kill -9 + resume", "concurrent": "(e) concurrent runs",
              "names": "(f) traversal in names"}
_CASES: collections.Counter = collections.Counter()
_FAILED: collections.Counter = collections.Counter()


def _category(nodeid: str) -> str | None:
    name = Path(nodeid.split("::")[0]).stem
    return name.removeprefix("test_faults_") if name.startswith("test_faults_") else None


def pytest_runtest_logreport(report):
    cat = _category(report.nodeid)
    if cat and (report.when == "call" or (report.when == "setup" and report.failed)):
        _CASES[cat] += 1
        _FAILED[cat] += report.failed


def pytest_terminal_summary(terminalreporter):
    if not _CASES:
        return
    tr = terminalreporter
    tr.section("fault-injection cases (issue 20)")
    tr.write_line(f"{'category':32} {'cases':>6} {'failed':>7}")
    for cat, title in CATEGORIES.items():
        if _CASES[cat]:
            tr.write_line(f"{title:32} {_CASES[cat]:>6} {_FAILED[cat]:>7}")
    tr.write_line(f"{'total':32} {sum(_CASES.values()):>6} {sum(_FAILED.values()):>7}")


@pytest.fixture
def cli(capsys):
    """Run `zoo ARGS` in-process: (exit code, stdout, stderr). argparse usage errors count as exit 2."""

    def run(*args: str) -> tuple[int, str, str]:
        root = logging.getLogger()
        handlers = list(root.handlers)
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse
            code = e.code
        finally:  # main's logging.basicConfig handler writes to this test's captured stderr: drop it after
            for h in root.handlers[:]:
                if h not in handlers:
                    root.removeHandler(h)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
