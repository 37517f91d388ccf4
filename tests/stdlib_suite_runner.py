"""
Run CPython's own import-system tests and write which of them failed, as JSON.

    python tests/stdlib_suite_runner.py REPORT.json [--hook] test.test_importlib ...

With ``--hook``, versionload's default tracker is installed before any test module is
loaded, so every import the tests make goes through it. `tests/test_stdlib_suite.py`
runs this twice and compares the two reports.
"""

from __future__ import annotations

import io
import json
import sys
import unittest


def main(argv: list[str]) -> int:
    report_path, *rest = argv
    hook = "--hook" in rest
    names = [name for name in rest if name != "--hook"]
    tracker = None
    if hook:
        import versionload

        tracker = versionload.install()
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    # The tests print progress of their own; only the report matters here.
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    failed = [test.id() for test, _ in (*result.failures, *result.errors)]
    failed += [test.id() for test in result.unexpectedSuccesses]
    report = {
        "hook": hook,
        "run": result.testsRun,
        "skipped": len(result.skipped),
        "failed": sorted(set(failed)),
        "tracked": len(tracker.tracked()) if tracker is not None else 0,
    }
    with open(report_path, "w", encoding="utf-8") as file:
        json.dump(report, file)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
