"""The command line, process by process: ``cli-cached`` and ``cli-renewal``.

``cli-cached``
    wall time and peak RSS of the ``tokenflow`` console script answering ``tokenflow token
    prod`` from a fresh cached token, interleaved (rotating order, same noise) with its floor
    (:data:`floors.READ_JSON_SCRIPT` reading the same token file), ``python -c pass`` and, when
    installed, ``python -c "import requests_oauthlib"`` and ``python -c "import
    authlib.integrations.requests_client"``. Checks that the hit took the fast path
    (``-X importtime``: nothing heavy) and that the server saw no request.
``cli-profiles``
    the cached ``tokenflow token prod`` with a config of 10,000 profiles, interleaved with the
    same with 10 profiles: a cache hit must not cost more with more profiles.
``cli-renewal``
    ``tokenflow token --force-refresh prod`` (a refresh from the CLI, the index up to date, so
    the renewal path answers: checked with ``-X importtime``, no PyYAML or pluggy), interleaved
    with its floor, :data:`floors.URLLIB3_ONESHOT_SCRIPT` doing the same refresh
    request and an fsync'd write of the reply.
"""

from __future__ import annotations

import compileall
import statistics
import sys
from pathlib import Path

from children import (
    checked_run,
    child_env,
    console_script,
    imported_modules,
    interleaved,
    source_stamps,
)
from fixtures import PROFILE, ServerInfo, config_text
from floors import READ_JSON_SCRIPT, URLLIB3_ONESHOT_SCRIPT
from harness import Result, Settings, Target, peer_available, ratio_figure, ratio_of_medians, summary
from memory import PeakRss, own_maxrss

import tokenflow
from tokenflow.testing import EmbeddedServer

HEAVY_MODULES = ("yaml", "jsonschema", "urllib3", "pluggy", "importlib.metadata", "platformdirs",
                 "filelock", "hashlib", "typing", "tokenflow.config.loader", "tokenflow.engine.session")
READ_JSON = "python read-json script (floor)"
ONESHOT = "urllib3 one-shot script (floor)"


def _compile_package(result: Result) -> Path:
    """Byte-compile tokenflow, as ``pip`` does for a regular install (an editable install run
    with PYTHONDONTWRITEBYTECODE would otherwise compile it on every run)."""
    package_dir = Path(tokenflow.__file__).parent
    compiled = compileall.compile_dir(str(package_dir), quiet=2, workers=1)
    result.info["bytecode_compiled"] = bool(compiled)
    return package_dir


def _token_file(cache_dir: Path) -> Path:
    files = sorted((cache_dir / "tokens").glob("*.json"))
    if len(files) != 1:
        raise RuntimeError(f"expected one token file in the cache, found {len(files)}")
    return files[0]


def bench_cli_cached(server: EmbeddedServer, settings: Settings, work: Path) -> Result:
    result = Result("cli-cached")
    home = work / "cli"
    home.mkdir()
    env = child_env(home / "cache", home)
    (home / "tokenflow.yaml").write_text(config_text(ServerInfo.of(server), dialect="teamserver"),
                                         encoding="utf-8")
    package_dir = _compile_package(result)
    sources_before = source_stamps(package_dir)

    script = console_script()
    if script[0] == sys.executable:
        result.notes.append("no tokenflow console script next to this interpreter; "
                            "measured 'python -m tokenflow' instead")
    token_cmd = [*script, "token", PROFILE]
    first = checked_run("tokenflow token", token_cmd, env, home)  # fetch, save, the index
    issued = {t.access_token for t in server.issued_tokens()}
    printed = first.stdout.strip()
    if printed.decode() not in issued:
        raise RuntimeError("tokenflow token printed a token the server did not issue")
    server.reset_counts()

    modules, out = imported_modules(token_cmd, env, home)
    # what the interpreter imports by itself here (site, .pth files) is not tokenflow's doing
    baseline = set(imported_modules([sys.executable, "-c", "pass"], env, home)[0])
    own = [m for m in modules if m not in baseline]
    heavy = sorted({m for m in own for h in HEAVY_MODULES if m == h or m.startswith(h + ".")})
    result.info["fast_path"] = not any(m.startswith("tokenflow.config.loader") for m in modules)
    result.info["heavy_imports"] = heavy
    result.info["modules_imported_beyond_python_startup"] = own
    if out.strip() != printed:
        raise RuntimeError("the cached run printed another token than the first run")
    if heavy:
        result.notes.append(f"the cache hit imported {', '.join(heavy)}")

    commands: dict[str, list[str]] = {
        "tokenflow token": token_cmd,
        READ_JSON: [sys.executable, "-c", READ_JSON_SCRIPT, str(_token_file(home / "cache"))],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    peers = {
        "import requests_oauthlib": "requests_oauthlib",
        "import authlib.integrations.requests_client": "authlib.integrations.requests_client",
    }
    for label, module in peers.items():
        top = module.split(".")[0]
        if peer_available(top):
            commands[f"python -c '{label}'"] = [sys.executable, "-c", label]
        else:
            result.notes.append(f"{top} is not installed: '{label}' skipped")

    wait4_rss: dict[str, list[float]] = {}
    walls = interleaved(commands, settings.cli_runs, settings.cli_warmups, env, home,
                        check={"tokenflow token": printed, READ_JSON: printed}, wait4_rss=wait4_rss)
    names = list(commands)
    peak = PeakRss(work)
    verified = peak.verify(env, home)
    # for the record: what os.wait4 says, inflated by this process's own memory (see memory.py)
    result.info["wait4_maxrss_mib"] = {n: statistics.median(v) for n, v in wait4_rss.items()}
    result.info["benchmark_process_maxrss_mib"] = own_maxrss()
    result.info["rss_method"] = peak.method
    result.info["rss_method_check"] = peak.check
    rss: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(settings.cli_rss_runs):  # apart from the wall runs: the tool costs time
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            rss[name].append(peak.measure(commands[name], env, home))
    result.info["server_requests_during_runs"] = server.counts["token"]
    if source_stamps(package_dir) != sources_before:
        result.notes.append("tokenflow's sources changed during the runs: some runs compiled "
                            "them again (no cached bytecode); rerun on an unchanging tree")
    if server.counts["token"]:
        result.notes.append("the cached runs contacted the token server")

    for name in names:
        result.figures[f"wall {name}"] = summary(walls[name], "ms")
        result.figures[f"peak RSS {name}"] = summary(rss[name], "MiB")
    tf = walls["tokenflow token"]
    result.figures["wall ratio to python -c pass"] = ratio_figure(tf, walls["python -c pass"])
    result.figures["wall ratio to the read-json script"] = ratio_figure(tf, walls[READ_JSON])
    result.figures["RSS ratio to python -c pass"] = ratio_figure(
        rss["tokenflow token"], rss["python -c pass"])
    result.targets.append(Target("cli-cached", "wall <= 2x python -c pass", 2.0, "<=",
                                 ratio_of_medians(tf, walls["python -c pass"])))
    result.targets.append(Target("cli-cached", "wall <= 1.1x the read-json script (floor)", 1.1,
                                 "<=", ratio_of_medians(tf, walls[READ_JSON])))
    rss_target = Target("cli-cached", "peak RSS <= 1.5x python -c pass", 1.5, "<=")
    if verified:
        rss_target.value = ratio_of_medians(rss["tokenflow token"], rss["python -c pass"])
    else:
        rss_target.note = f"RSS measured by {peak.method}"
        result.notes.append("GNU time is not available (or disagreed with VmHWM): peak RSS figures "
                            "are os.wait4 upper bounds that include this benchmark's own memory")
    result.targets.append(rss_target)
    ro_name = "python -c 'import requests_oauthlib'"
    ro_target = Target("cli-cached", "wall <= 0.25x import requests_oauthlib", 0.25, "<=")
    if ro_name in walls:
        result.figures["wall ratio to import requests_oauthlib"] = ratio_figure(tf, walls[ro_name])
        ro_target.value = ratio_of_medians(tf, walls[ro_name])
    else:
        ro_target.note = "requests-oauthlib not installed"
    result.targets.append(ro_target)
    au_name = "python -c 'import authlib.integrations.requests_client'"
    if au_name in walls:
        result.figures["wall ratio to import authlib"] = ratio_figure(tf, walls[au_name])
    return result


def bench_cli_renewal(server: EmbeddedServer, settings: Settings, work: Path) -> Result:
    result = Result("cli-renewal")
    home = work / "renewal"
    home.mkdir()
    env = child_env(home / "cache", home)
    info = ServerInfo.of(server)
    # the secret from a variable: a literal one in the YAML keeps renewals on the full path
    env["BENCH_CLIENT_SECRET"] = info.client_secret
    (home / "tokenflow.yaml").write_text(
        config_text(info, dialect="rfc6749", secret_env="BENCH_CLIENT_SECRET"), encoding="utf-8")
    _compile_package(result)
    refresh_cmd = [*console_script(), "token", "--force-refresh", PROFILE]
    checked_run("tokenflow token", [*console_script(), "token", PROFILE], env, home)
    from tokenflow.base import cachefile

    data = cachefile.read(str(_token_file(home / "cache")))
    if data is None or not data.get("refresh_token"):
        raise RuntimeError("the first run cached no refresh token")
    oneshot = [sys.executable, "-c", URLLIB3_ONESHOT_SCRIPT, info.token_url, info.client_id,
               info.client_secret, str(data["refresh_token"]), str(home / "oneshot.json")]
    commands = {"tokenflow token --force-refresh": refresh_cmd, ONESHOT: oneshot}
    # the renewal path (tokenflow/cli/renewal.py) renews without the config or the plugins
    modules, _ = imported_modules(refresh_cmd, env, home)
    full = sorted(m for m in ("yaml", "pluggy", "jsonschema", "tokenflow.config.loader")
                  if m in modules)
    result.info["renewal_path"] = not full
    if full:
        raise RuntimeError(f"--force-refresh took the full path (imported {full})")
    server.reset_counts()
    warmups = 1 if settings.smoke else 2
    walls = interleaved(commands, settings.renewal_runs, warmups, env, home)
    refreshes = server.counts["refresh_token"]
    expected = 2 * (settings.renewal_runs + warmups)
    result.info["server_refresh_requests"] = refreshes
    if refreshes != expected:
        raise RuntimeError(f"the server saw {refreshes} refreshes, expected {expected}")
    for name, values in walls.items():
        result.figures[f"wall {name}"] = summary(values, "ms")
    tf = walls["tokenflow token --force-refresh"]
    result.figures["wall ratio to the one-shot script"] = ratio_figure(tf, walls[ONESHOT])
    result.targets.append(Target("cli-renewal", "--force-refresh <= 1.3x the urllib3 one-shot "
                                 "script (floor)", 1.3, "<=", ratio_of_medians(tf, walls[ONESHOT])))
    result.info["median_ms"] = {n: statistics.median(v) for n, v in walls.items()}
    return result


def _many_profiles(server: ServerInfo, count: int) -> str:
    """The ``prod`` profile of :func:`fixtures.config_text` and *count* - 1 others like it."""
    lines = config_text(server, dialect="teamserver").rstrip("\n").split("\n")
    body = lines[lines.index(f"  {PROFILE}:") + 1:]
    for i in range(count - 1):
        lines.append(f"  p{i:05d}:")
        lines.extend(body)
    return "\n".join(lines) + "\n"


def bench_cli_profiles(server: EmbeddedServer, settings: Settings, work: Path) -> Result:
    result = Result("cli-profiles")
    info = ServerInfo.of(server)
    _compile_package(result)
    counts = (10, 10_000)
    commands: dict[str, list[str]] = {}
    homes: dict[str, Path] = {}
    printed: dict[str, bytes] = {}
    for count in counts:
        home = work / f"profiles-{count}"
        home.mkdir()
        (home / "tokenflow.yaml").write_text(_many_profiles(info, count), encoding="utf-8")
        name = f"tokenflow token, {count:,} profiles"
        commands[name] = [*console_script(), "token", PROFILE]
        homes[name] = home
        env = child_env(home / "cache", home)
        printed[name] = checked_run(name, commands[name], env, home).stdout.strip()
        modules, _ = imported_modules(commands[name], env, home)
        fast = not any(m.startswith("tokenflow.config.loader") for m in modules)
        result.info[f"fast_path {count}"] = fast
        if not fast:
            result.notes.append(f"the cache hit with {count:,} profiles took the full path")
    server.reset_counts()
    walls: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for round_ in range(settings.cli_warmups + settings.cli_runs):
        for name in names if round_ % 2 else names[::-1]:
            home = homes[name]
            run = checked_run(name, commands[name], child_env(home / "cache", home), home)
            if run.stdout.strip() != printed[name]:
                raise RuntimeError(f"{name} printed a different token from cache")
            if round_ >= settings.cli_warmups:
                walls[name].append(run.wall * 1000)
    result.info["server_requests_during_runs"] = server.counts["token"]
    if server.counts["token"]:
        result.notes.append("the cached runs contacted the token server")
    for name in names:
        result.figures[f"wall {name}"] = summary(walls[name], "ms")
    few, many = names
    result.figures["wall ratio 10,000 / 10 profiles"] = ratio_figure(walls[many], walls[few])
    result.targets.append(Target("cli-profiles", "cached CLI with 10,000 profiles <= 1.15x with 10",
                                 1.15, "<=", ratio_of_medians(walls[many], walls[few])))
    return result
