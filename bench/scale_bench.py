"""``profiles-scale``: ``load_config`` (parse, ``${VAR}``, ``extends``, schema) of many profiles.

Generated configs of 1, 100 and 1,000 profiles: one abstract base, profiles in ``extends``
chains 10 deep. Warm in-process loads, and cold ``tokenflow validate`` processes.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from children import child_env, console_script, run_child
from harness import Result, Settings, Target, summary

import tokenflow
from tokenflow.testing import EmbeddedServer


def scale_config(count: int, server_url: str) -> str:
    """*count* usable profiles in chains of ``extends`` (10 deep) from one abstract base."""
    lines = [
        "version: 1",
        "servers:",
        "  ts:",
        f"    token_url: {json.dumps(server_url)}",
        "    dialect: teamserver",
        "clients:",
        "  app:",
        "    client_id: bench-client",
        "    client_secret: bench-secret",
        "profiles:",
        "  base:",
        "    abstract: true",
        "    server: ts",
        "    client: app",
        "    grant: password",
        "    username: alice",
        "    password: {env: BENCH_PASSWORD}",
        "    store: memory",
    ]
    for i in range(count):
        parent = "base" if i % 10 == 0 else f"p{i - 1:05d}"
        lines += [
            f"  p{i:05d}:",
            f"    extends: {parent}",
            f"    scope: read team{i % 7}",
            f"    description: generated profile {i} (${{BENCH_REGION:-eu}})",
            f"    refresh_margin: {30 + i % 60}",
        ]
    return "\n".join(lines) + "\n"


def bench_profiles_scale(server: EmbeddedServer, settings: Settings, work: Path) -> Result:
    result = Result("profiles-scale")
    home = work / "scale"
    home.mkdir()
    env = child_env(home / "cache", home)
    per_profile: dict[int, float] = {}
    tokenflow.load_config(_write_scale(home, 1, server.token_url))  # imports, schema caches
    for count in settings.scale_sizes:
        path = _write_scale(home, count, server.token_url)
        totals = []
        for _ in range(settings.scale_repeats):
            started = time.perf_counter()
            config = tokenflow.load_config(path)
            totals.append((time.perf_counter() - started) * 1000)
            if len(config.profiles) != count:
                raise RuntimeError(f"expected {count} profiles, got {len(config.profiles)}")
        chain = config.profiles[f"p{count - 1:05d}"].extends
        result.figures[f"load+validate {count} profiles"] = summary(totals, "ms")
        result.figures[f"per profile at {count}"] = summary(
            [t * 1000 / count for t in totals], "us", extends_depth=len(chain))
        per_profile[count] = statistics.median(totals) * 1000 / count
        cold = []
        for _ in range(settings.scale_cold_runs):
            run = run_child([*console_script(), "validate", str(path)], env, home)
            if run.returncode != 0:
                raise RuntimeError(f"tokenflow validate failed: {run.stderr.decode()[-300:]}")
            cold.append(run.wall * 1000)
        result.figures[f"tokenflow validate (new process) {count} profiles"] = summary(cold, "ms")
    biggest = max(settings.scale_sizes)
    result.targets.append(Target("profiles-scale", f"{biggest} profiles load and validate < 1 s",
                                 1000.0, "<",
                                 result.figures[f"load+validate {biggest} profiles"]["median"]))
    if 100 in per_profile and biggest > 100:
        result.targets.append(Target("profiles-scale",
                                     f"time per profile flat: {biggest} vs 100 <= 2x", 2.0, "<=",
                                     per_profile[biggest] / per_profile[100]))
    return result


def _write_scale(home: Path, count: int, url: str) -> Path:
    path = home / f"profiles-{count}.yaml"
    path.write_text(scale_config(count, url), encoding="utf-8")
    return path
