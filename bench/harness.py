"""The benchmark harness: settings, figures (median/min/max), targets, the table and the JSON.

Every benchmark module returns a :class:`Result`: named figures (each the median over repeated
runs with the minimum and maximum, see :func:`summary`), free-form ``info`` for the JSON, notes
for the reader and :class:`Target` s, each a ratio to its own floor (or an exact count) with a
limit. ``run.py`` prints them with :func:`print_table` and checks the targets unless ``--smoke``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tokenflow

HERE = Path(__file__).resolve().parent


# -- settings ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """Iteration counts: a full run, or ``--smoke`` (tiny counts: CI checks that all still runs)."""

    smoke: bool
    cli_runs: int
    cli_warmups: int
    cli_rss_runs: int
    renewal_runs: int
    hot_calls: int
    hot_repeats: int
    http_rounds: int
    http_calls: int
    http_warmups: int
    many_token_files: int
    stampede_processes: int
    stampede_threads: int
    stampede_repeats: int
    scale_sizes: tuple[int, ...]
    scale_repeats: int
    scale_cold_runs: int
    adapter_rounds: int
    adapter_calls: int
    fleet_hosts: int
    fleet_threads: int
    fleet_repeats: int

    @classmethod
    def make(cls, smoke: bool, processes: int | None, threads: int | None) -> Settings:
        if smoke:
            return cls(True, cli_runs=3, cli_warmups=1, cli_rss_runs=2, renewal_runs=2,
                       hot_calls=20_000, hot_repeats=2,
                       http_rounds=2, http_calls=5, http_warmups=2, many_token_files=10_000,
                       stampede_processes=processes or 2, stampede_threads=threads or 4,
                       stampede_repeats=1, scale_sizes=(1, 100, 1000), scale_repeats=1,
                       scale_cold_runs=1, adapter_rounds=2, adapter_calls=20,
                       fleet_hosts=2, fleet_threads=4, fleet_repeats=1)
        return cls(False, cli_runs=30, cli_warmups=3, cli_rss_runs=10, renewal_runs=15,
                   hot_calls=1_000_000, hot_repeats=7,
                   http_rounds=7, http_calls=200, http_warmups=20, many_token_files=10_000,
                   stampede_processes=processes or 8, stampede_threads=threads or 32,
                   stampede_repeats=5, scale_sizes=(1, 100, 1000), scale_repeats=7,
                   scale_cold_runs=3, adapter_rounds=21, adapter_calls=100,
                   fleet_hosts=4, fleet_threads=16, fleet_repeats=5)


# -- statistics ----------------------------------------------------------------------------------
def summary(values: Sequence[float], unit: str, **extra: Any) -> dict[str, Any]:
    """A figure: median, min and max over repeated runs."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "unit": unit, **extra}


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile of *values*, interpolated between the two nearest samples."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = q / 100 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio_figure(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, Any]:
    """Ratio of paired runs (same round), summarised; the headline uses the ratio of medians."""
    pairs = [n / d for n, d in zip(numerators, denominators, strict=True)]
    figure = summary(pairs, "x")
    figure["of_medians"] = statistics.median(numerators) / statistics.median(denominators)
    return figure


def ratio_of_medians(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    return statistics.median(numerators) / statistics.median(denominators)


@dataclass
class Target:
    """One target: a measured value (usually a ratio to a floor) against a limit."""

    benchmark: str
    name: str
    limit: float
    op: str  # "<=" or "<" or "=="
    value: float | None = None
    note: str = ""

    @property
    def status(self) -> str:
        if self.value is None:
            return "SKIP"
        ok = {"<=": self.value <= self.limit, "<": self.value < self.limit,
              "==": self.value == self.limit}[self.op]
        return "PASS" if ok else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "name": self.name, "value": self.value,
                "op": self.op, "limit": self.limit, "status": self.status, "note": self.note}


@dataclass
class Result:
    """What one benchmark measured."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"figures": self.figures, "info": self.info, "notes": self.notes,
                "targets": [t.as_dict() for t in self.targets]}


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    sys.stderr.write(f"bench: {message}\n")
    sys.stderr.flush()


# -- environment ---------------------------------------------------------------------------------
def peer_available(module: str) -> bool:
    """Whether an optional peer library (requests-oauthlib, Authlib) is installed."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def peer_version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine and the versions the figures were taken with (saved in the JSON)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "nproc": affinity,
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "in_venv": sys.prefix != sys.base_prefix,
        "loadavg_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "tokenflow": tokenflow.__version__,
        "peers": {name: peer_version(name) for name in
                  ("requests-oauthlib", "oauthlib", "Authlib", "requests", "httpx", "urllib3",
                   "filelock", "redis")},
    }


# -- output --------------------------------------------------------------------------------------
def _fmt(value: float) -> str:
    if value >= 1e5:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(results: Sequence[Result], checked: bool, out: Any = sys.stdout) -> None:
    """Figures as an aligned table, then the notes, then one line per target."""
    rows = [("benchmark", "figure", "median", "min", "max", "unit")]
    for result in results:
        for name, fig in result.figures.items():
            rows.append((result.name, name, _fmt(fig["median"]), _fmt(fig["min"]),
                         _fmt(fig["max"]), fig["unit"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                 enumerate(zip(row, widths, strict=True))]
        out.write("  ".join(cells).rstrip() + "\n")
        if index == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    notes = [(r.name, n) for r in results for n in r.notes]
    if notes:
        out.write("\n")
        for name, note in notes:
            out.write(f"note: {name}: {note}\n")
    out.write("\n")
    for result in results:
        for target in result.targets:
            value = "n/a" if target.value is None else f"{target.value:.3g}"
            status = target.status if checked else "not checked"
            extra = f" ({target.note})" if target.note else ""
            out.write(f"{status:12s} {target.benchmark}: {target.name}: {value}{extra}\n")


def default_json_path() -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return HERE / "results" / f"{stamp}.json"


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    """A private scratch directory for one run, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="tokenflow-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
