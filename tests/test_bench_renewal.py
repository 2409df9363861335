"""``bench/renewal.py --smoke`` runs end to end: every command renews (one refresh each, which
the script checks against the server's count) and the ratios are printed. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "renewal.py"


def test_renewal_bench_smoke_runs_and_prints_the_ratio() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["tokenflow", "urllib3", "python"]
    assert "ratio to the one-shot script: wall " in lines[4]
    assert "(target <= 1.3x: " in lines[4]
