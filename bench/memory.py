"""Memory sampling: the peak RSS of a child process, measured so that it is the child's own.

``os.wait4`` is not enough: at ``exec`` Linux records the high-water mark of the memory the
child had before it (a copy of the forking process, this 30 MB benchmark) as the new program's
``ru_maxrss`` too. GNU time forks the command from its own small process (about 2 MB, below any
Python), so its ``%M`` is the command's own peak; the method is checked once against ``VmHWM``
read by a child from ``/proc/self/status``. Without GNU time the figure falls back to
``os.wait4`` and is an upper bound (the RSS target is then not checked).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from children import run_child


class PeakRss:
    """Peak RSS of one child process in MiB, with GNU time when it is there and agrees."""

    def __init__(self, work: Path) -> None:
        self.out = work / "time.out"
        self.tool = self._gnu_time()
        self.method = "GNU time %M" if self.tool else "os.wait4 (upper bound: see bench/README.md)"
        self.check: dict[str, Any] = {}

    @staticmethod
    def _gnu_time() -> str | None:
        for candidate in ("/usr/bin/time", shutil.which("gtime"), shutil.which("time")):
            if not candidate or not os.path.isfile(candidate):
                continue
            try:
                done = subprocess.run([candidate, "--version"], capture_output=True, timeout=10,
                                      check=False)
            except OSError:
                continue
            if b"GNU" in done.stdout + done.stderr:
                return candidate
        return None

    def measure(self, argv: Sequence[str], env: dict[str, str], cwd: Path) -> float:
        """The command's peak RSS in MiB."""
        if self.tool is None:
            return run_child(argv, env, cwd).maxrss
        run = run_child([self.tool, "-f", "%M", "-o", str(self.out), *argv], env, cwd)
        if run.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {run.stderr.decode(errors='replace')[-300:]}")
        lines = self.out.read_text(encoding="utf-8").split()
        return int(lines[-1]) / 1024

    def verify(self, env: dict[str, str], cwd: Path) -> bool:
        """Compare the tool with the kernel's own figure for a child that reads it at its end."""
        if self.tool is None or not os.path.exists("/proc/self/status"):
            return False
        probe = ("import sys\nfor line in open('/proc/self/status'):\n"
                 "    if line.startswith('VmHWM:'): sys.stdout.write(line.split()[1])")
        run = run_child([self.tool, "-f", "%M", "-o", str(self.out), sys.executable, "-c", probe],
                        env, cwd)
        measured = int(self.out.read_text(encoding="utf-8").split()[-1])
        own = int(run.stdout.decode() or 0)
        self.check = {"tool_kib": measured, "vmhwm_kib": own}
        if own and abs(measured - own) / own > 0.1:
            self.tool = None  # an old GNU time (1.7 reported 4x); fall back
            self.method = "os.wait4 (upper bound: GNU time disagreed with VmHWM)"
            return False
        return True


def own_maxrss() -> float:
    """This benchmark process's own peak RSS in MiB (what ``os.wait4`` leaks into children)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / (1024 * 1024 if sys.platform == "darwin" else 1024)
