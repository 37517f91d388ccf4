"""
The benchmarks still run: their quick mode completes and prints every comparison.

No timing is asserted here (a shared CI machine is too noisy for that); the figures
and targets live in ``benchmarks/README.md``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

RUN_ALL = Path(__file__).resolve().parent.parent / "benchmarks" / "run_all.py"


class TestQuickMode:
    """
    ``python benchmarks/run_all.py --quick``.
    """

    def test_completes_and_prints_ratios(self, tmp_path: Path) -> None:
        """
        Every benchmark runs in quick mode and reports a ratio for each comparison.
        """
        summary = tmp_path / "results.json"
        completed = subprocess.run(
            [sys.executable, str(RUN_ALL), "--quick", "--json", str(summary)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = completed.stdout

        assert 0 == completed.returncode, completed.stderr[-3000:]
        assert ["events", "gate", "import", "memory", "reload", "watch"] == sorted(
            re.findall(r"^== (\w+)", output, flags=re.MULTILINE)
        )
        ratios = [float(value) for value in re.findall(r"\| ratio (\d+\.\d+) \[", output)]
        assert len(ratios) >= 18
        assert all(ratio > 0 for ratio in ratios)
        assert "reloads, max_versions=10" in output
        assert "edit -> running" in output
        assert summary.exists()
