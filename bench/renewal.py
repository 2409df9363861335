"""A renewal from the CLI against its floor: ``python bench/renewal.py [--runs N] [--smoke]``.

Issue 13, target 2: ``tokenflow token PROFILE --force-refresh`` (the same full path as the hourly
refresh of a cached token, which the fast path hands over because the token is inside its
refresh margin) should cost at most 1.3x a urllib3 one-shot script doing the same request: a
refresh-token grant POSTed with HTTP Basic client authentication, the reply parsed, the access
token printed. Both run as fresh processes against the embedded server (``rfc6749`` dialect),
interleaved in rotating order with ``python -c pass`` so all share the same noise. Reported per
command: the median wall time and the median CPU time (user + system, from ``os.wait4``; the
steadier figure on a loaded machine) with min and max, then the ratios of the medians.

Standalone on purpose (the main suite in ``bench/run.py`` is being split); POSIX only.
"""

from __future__ import annotations

import argparse
import base64
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

import tokenflow
from tokenflow.testing import EmbeddedServer

TARGET = 1.3
PROFILE = "prod"

ONE_SHOT = """\
import base64, json, os, sys
import urllib3

pair = (os.environ["BENCH_CLIENT_ID"] + ":" + os.environ["BENCH_CLIENT_SECRET"]).encode()
reply = urllib3.PoolManager().request(
    "POST", os.environ["BENCH_TOKEN_URL"],
    body="grant_type=refresh_token&refresh_token=" + os.environ["BENCH_REFRESH_TOKEN"],
    headers={"Content-Type": "application/x-www-form-urlencoded",
             "Authorization": "Basic " + base64.b64encode(pair).decode()},
)
sys.stdout.write(json.loads(reply.data)["access_token"] + "\\n")
"""


def config_text(server: EmbeddedServer) -> str:
    client, account = server.default_client, server.default_account
    return "\n".join([
        "version: 1",
        "servers:",
        f"  ts: {{token_url: {json.dumps(server.token_url)}, dialect: rfc6749}}",
        "clients:",
        # from a variable: a literal secret in the YAML keeps renewals on the full path
        f"  app: {{client_id: {json.dumps(client.client_id)}, "
        "client_secret: {env: BENCH_CLIENT_SECRET}}",
        "profiles:",
        f"  {PROFILE}:",
        "    server: ts",
        "    client: app",
        "    grant: password",
        f"    username: {json.dumps(account.username)}",
        f"    password: {json.dumps(account.password)}",
        "",
    ])


def refresh_token(server: EmbeddedServer) -> str:
    """A refresh token of the default account, for the one-shot script (the server keeps it)."""
    import urllib3

    client, account = server.default_client, server.default_account
    pair = f"{client.client_id}:{client.secret}".encode()
    reply = urllib3.PoolManager().request(
        "POST", server.token_url,
        body=urlencode({"grant_type": "password", "username": account.username,
                        "password": account.password}),
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "Authorization": "Basic " + base64.b64encode(pair).decode()})
    return str(json.loads(reply.data)["refresh_token"])


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "tokenflow"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "tokenflow"]


def run(argv: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[float, float, bytes]:
    """Wall seconds, CPU seconds (user + system of the child alone) and stdout of one run."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {err.decode(errors='replace')[-500:]}")
    return wall, _cpu_of_last_child(), out


_last_cpu = [0.0]


def _cpu_of_last_child() -> float:
    """CPU time of the child just reaped: the growth of RUSAGE_CHILDREN since the previous one."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    spent, _last_cpu[0] = total - _last_cpu[0], total
    return spent


def spread(values: Sequence[float]) -> str:
    return (f"{statistics.median(values) * 1000:8.1f} ms "
            f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="measured rounds (default 20)")
    parser.add_argument("--warmups", type=int, default=3, help="unmeasured rounds (default 3)")
    parser.add_argument("--smoke", action="store_true", help="2 rounds, 1 warm-up: a quick check")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 when the CPU ratio is above {TARGET}")
    args = parser.parse_args(argv)
    runs, warmups = (2, 1) if args.smoke else (args.runs, args.warmups)
    # an install byte-compiles; an editable checkout under PYTHONDONTWRITEBYTECODE would not
    compileall.compile_dir(str(Path(tokenflow.__file__).parent), quiet=2, workers=1)
    with tempfile.TemporaryDirectory(prefix="tokenflow-renewal-") as tmp, \
            EmbeddedServer() as server:
        work = Path(tmp)
        (work / "tokenflow.yaml").write_text(config_text(server), encoding="utf-8")
        (work / "oneshot.py").write_text(ONE_SHOT, encoding="utf-8")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TOKENFLOW_") and k.lower() not in ("http_proxy", "https_proxy")}
        env.update(TOKENFLOW_CACHE_DIR=str(work / "cache"), XDG_CONFIG_HOME=str(work / "config"),
                   NO_PROXY="127.0.0.1,localhost", BENCH_TOKEN_URL=server.token_url,
                   BENCH_CLIENT_ID=server.default_client.client_id,
                   BENCH_CLIENT_SECRET=server.default_client.secret,
                   BENCH_REFRESH_TOKEN=refresh_token(server))
        commands = {
            "tokenflow token --force-refresh": [*console_script(), "token", PROFILE,
                                                "--force-refresh"],
            "urllib3 one-shot script": [sys.executable, str(work / "oneshot.py")],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        run(commands["tokenflow token --force-refresh"], env, work)  # the first grant, the index
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        server.reset_counts()
        for round_ in range(warmups + runs):
            shift = round_ % len(names)  # rotate: no command always runs first
            for name in names[shift:] + names[:shift]:
                _cpu_of_last_child()
                wall, cpu, out = run(commands[name], env, work)
                if name != "python -c pass" and not out.strip():
                    raise RuntimeError(f"{name} printed no token")
                if round_ >= warmups:
                    walls[name].append(wall)
                    cpus[name].append(cpu)
        renewals = server.counts["refresh_token"]
        if renewals != 2 * (warmups + runs):
            raise RuntimeError(f"expected one refresh per renewal, the server saw {renewals}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"renewal from the CLI vs its floor: {runs} rounds after {warmups} warm-ups, "
          f"load average {load:.1f} at the end")
    for name in names:
        print(f"  {name:34} wall {spread(walls[name])}   cpu {spread(cpus[name])}")
    ours, floor = "tokenflow token --force-refresh", "urllib3 one-shot script"
    wall_ratio = statistics.median(walls[ours]) / statistics.median(walls[floor])
    cpu_ratio = statistics.median(cpus[ours]) / statistics.median(cpus[floor])
    verdict = "PASS" if cpu_ratio <= TARGET else "FAIL"
    print(f"  ratio to the one-shot script: wall {wall_ratio:.2f}x, cpu {cpu_ratio:.2f}x "
          f"(target <= {TARGET}x: {verdict})")
    return 1 if args.check and verdict == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())
