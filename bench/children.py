"""Child processes: run a command to completion and time it, with the environment every child gets.

The CLI benchmarks measure whole processes (``tokenflow token``, ``python -c pass``, the floor
scripts): :func:`run_child` times one from ``Popen`` to ``wait4`` and keeps its rusage, and
:func:`imported_modules` lists what a run imports (``-X importtime``), to prove a cache hit took
the fast path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def child_env(cache_dir: Path, home: Path) -> dict[str, str]:
    """The environment of every child process: this one's, minus tokenflow's own variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TOKENFLOW_") and k.lower() not in ("http_proxy", "https_proxy",
                                                                    "all_proxy")}
    env["TOKENFLOW_CACHE_DIR"] = str(cache_dir)
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def console_script() -> list[str]:
    """The ``tokenflow`` console script next to this interpreter (``-m tokenflow`` if none)."""
    script = Path(sys.executable).parent / "tokenflow"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "tokenflow"]


@dataclass(frozen=True)
class ChildRun:
    wall: float  # seconds
    maxrss: float  # MiB
    returncode: int
    stdout: bytes
    stderr: bytes


def run_child(argv: Sequence[str], env: dict[str, str], cwd: Path) -> ChildRun:
    """Run *argv* to completion; its own peak RSS comes from ``os.wait4`` (not RUSAGE_CHILDREN)."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
        err.seek(0)
        errors = err.read()
    rss = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return ChildRun(wall, rss, proc.returncode, out, errors)


def checked_run(name: str, argv: Sequence[str], env: dict[str, str], cwd: Path) -> ChildRun:
    """:func:`run_child` that raises when the command fails."""
    run = run_child(argv, env, cwd)
    if run.returncode != 0:
        raise RuntimeError(f"{name} failed: {run.stderr.decode(errors='replace')[-500:]}")
    return run


def imported_modules(argv: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[list[str], bytes]:
    """Modules a run imports (from ``-X importtime``) and its stdout."""
    if argv[0] == sys.executable:
        cmd = [sys.executable, "-X", "importtime", *argv[1:]]
    else:  # a console script: run its file with this interpreter
        cmd = [sys.executable, "-X", "importtime", *argv]
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, timeout=120, check=False)
    names = []
    for line in done.stderr.decode("utf-8", "replace").splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.append(name)
    return names, done.stdout


def source_stamps(package_dir: Path) -> dict[str, int]:
    """Modification times of a package's sources (a change mid-run means recompiled bytecode)."""
    return {str(p): p.stat().st_mtime_ns for p in sorted(package_dir.rglob("*.py"))}


def interleaved(commands: dict[str, list[str]], rounds: int, warmups: int,
                env: dict[str, str], cwd: Path,
                check: dict[str, bytes] | None = None,
                wait4_rss: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Wall times in ms of each command over *rounds*, in rotating order so all share the noise.

    *check* maps a command name to the stdout it must print (stripped) on every run; the
    ``os.wait4`` peak RSS of each run goes to *wait4_rss* if given (an upper bound: see memory).
    """
    walls: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for round_ in range(warmups + rounds):
        shift = round_ % len(names)  # rotate the order: no command always runs first
        for name in names[shift:] + names[:shift]:
            run = checked_run(name, commands[name], env, cwd)
            if check and name in check and run.stdout.strip() != check[name]:
                raise RuntimeError(f"{name} printed something unexpected: {run.stdout[-200:]!r}")
            if round_ >= warmups:
                walls[name].append(run.wall * 1000)
                if wait4_rss is not None:
                    wait4_rss.setdefault(name, []).append(run.maxrss)
    return walls
