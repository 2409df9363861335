"""Local inputs are read bounded: regular files only, never without limit, never waiting for ever.

Every attack here is a real thing on the machine: a FIFO no one writes to, ``/dev/zero``, a
10 MiB file, a command that prints for ever or leaves a child holding its stdout, a YAML file
whose aliases expand to a billion nodes. Tests that could hang or exhaust memory on a broken
build are made to fail instead: a FIFO gets a writer after a while (so a blocked read ends
with nothing), and CLI runs have a 1 GiB address-space limit and a timeout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import pytest
from conftest import CliResult, profile_yaml

from tokenflow.base import boundedread, cachefile
from tokenflow.builtins.command_source import MAX_OUTPUT_BYTES, resolve_command
from tokenflow.builtins.file_source import MAX_SECRET_BYTES, resolve_file
from tokenflow.builtins.file_store import FileStore
from tokenflow.config.yamldoc import MAX_YAML_ALIASES, MAX_YAML_NODES, parse_document
from tokenflow.errors import CredentialError, StorageError
from tokenflow.plugins.contracts import PluginContext
from tokenflow.testing import EmbeddedServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, devices, process groups")

WriteConfig = Callable[..., Path]
ONE_GIB = 1 << 30


def context(base: Path) -> PluginContext:
    return PluginContext("prod", base, base, False)


@contextmanager
def fifo(path: Path, release_after: float = 10.0) -> Iterator[Path]:
    """A FIFO at *path*. If a reader is still blocked on it after *release_after* seconds, a
    writer opens and closes it, so a broken build fails (reads nothing) rather than hangs."""
    os.mkfifo(path)
    stop = threading.Event()

    def release() -> None:
        if stop.wait(release_after):
            return
        while not stop.is_set():
            with suppress(OSError):  # ENXIO: no reader yet
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            stop.wait(0.05)

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(5)


def run_limited(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                timeout: float = 90) -> CliResult:
    """``python -m tokenflow ARGS`` with at most 1 GiB of address space and a deadline."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ONE_GIB, ONE_GIB))

    done = subprocess.run(
        [sys.executable, "-m", "tokenflow", *args], cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout, check=False, preexec_fn=limit,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@contextmanager
def memory_cap(extra: int = 512 << 20) -> Iterator[None]:
    """Let this process grow by at most *extra* bytes of address space meanwhile, so an
    unbounded read fails with MemoryError instead of taking the machine's memory."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm", encoding="ascii") as handle:
        size = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def alive(pid: int) -> bool:
    """Whether *pid* runs (a zombie waiting to be reaped counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_dead(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- the shared reader ---------------------------------------------------------------------------
def test_read_limited_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    with fifo(tmp_path / "pipe") as pipe, pytest.raises(boundedread.NotRegularFile, match="FIFO"):
        boundedread.read_limited(str(pipe), 100)
    with pytest.raises(boundedread.NotRegularFile, match="character device"):
        boundedread.read_limited("/dev/zero", 100)
    with pytest.raises(boundedread.NotRegularFile, match="a directory"):
        boundedread.read_limited(str(tmp_path), 100)


def test_read_limited_stops_at_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 101)
    with pytest.raises(boundedread.FileTooLarge, match="over 100 bytes"):
        boundedread.read_limited(str(path), 100)
    assert boundedread.read_limited(str(path), 101) == b"x" * 101


# -- secret files ----------------------------------------------------------------------------------
def test_a_fifo_as_secret_file_is_refused_at_once(tmp_path: Path) -> None:
    with fifo(tmp_path / "password") as pipe, \
            pytest.raises(CredentialError, match=r"secret file .*password is a FIFO"):
        resolve_file(str(pipe), context(tmp_path))


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/null", "."], ids=["zero", "null", "dir"])
def test_a_device_or_directory_as_secret_file_is_refused(tmp_path: Path, target: str) -> None:
    with memory_cap(), pytest.raises(CredentialError, match="not a regular file"):
        resolve_file(target, context(tmp_path))


def test_a_symlink_to_dev_zero_is_refused(tmp_path: Path) -> None:
    (tmp_path / "password").symlink_to("/dev/zero")
    with memory_cap(), pytest.raises(CredentialError, match="character device"):
        resolve_file("password", context(tmp_path))


def test_only_the_first_line_of_a_big_secret_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "password"
    with path.open("wb") as handle:
        handle.write(b"s3cret\r\nsecond line\n")
        handle.truncate(10 << 20)  # 10 MiB: over every limit, but the first line is short
    assert resolve_file(str(path), context(tmp_path)) == "s3cret"


def test_a_secret_file_with_a_first_line_over_64_kib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_bytes(b"x" * MAX_SECRET_BYTES + b"\n")
    assert resolve_file(str(path), context(tmp_path)) == "x" * MAX_SECRET_BYTES
    path.write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    with pytest.raises(CredentialError, match=r"first line of .* is over 64 KiB"):
        resolve_file(str(path), context(tmp_path))


def test_dev_zero_as_a_profiles_password_fails_cleanly(
    tokenflow_server: EmbeddedServer, write_config: WriteConfig
) -> None:
    path = write_config(profile_yaml(tokenflow_server,
                                     extra_profile={"password": "{file: /dev/zero}"}))
    result = run_limited("token", "prod", "-c", str(path))
    assert result.returncode == 1, result
    assert "secret file /dev/zero is a character device, not a regular file" in result.stderr
    assert tokenflow_server.counts["token"] == 0


# -- commands ----------------------------------------------------------------------------------------
def test_a_command_that_prints_for_ever_is_killed_at_64_kib(tmp_path: Path) -> None:
    with memory_cap(), \
            pytest.raises(CredentialError, match=r"command 'yes' printed over 64 KiB \(it was killed\)"):
        resolve_command({"argv": ["yes"], "timeout": 2}, context(tmp_path))
    assert MAX_OUTPUT_BYTES == 64 * 1024


def test_a_background_child_holding_stdout_does_not_fail_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"echo s3cret; sleep 300 & echo $! > {pidfile}"
    try:
        assert resolve_command({"argv": ["sh", "-c", script], "timeout": 20},
                               context(tmp_path)) == "s3cret"
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), 9)


def test_a_timeout_kills_the_commands_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    try:
        with pytest.raises(CredentialError, match=r"did not finish in 1s \(it was killed\)"):
            resolve_command({"argv": ["sh", "-c", script], "timeout": 1}, context(tmp_path))
        grandchild = int(pidfile.read_text())
        assert wait_dead(grandchild), "the command's child survived the timeout"
    finally:
        if pidfile.exists():
            with suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), 9)


def test_a_failing_commands_stderr_is_bounded_and_its_last_line_shown(tmp_path: Path) -> None:
    script = "head -c 3000000 /dev/zero | tr '\\0' e >&2; echo >&2; echo last words >&2; exit 3"
    with pytest.raises(CredentialError, match=r"exited with 3: last words$"):
        resolve_command(["sh", "-c", script], context(tmp_path))


def test_a_command_without_a_newline_still_gives_its_output(tmp_path: Path) -> None:
    assert resolve_command(["printf", "abc"], context(tmp_path)) == "abc"
    assert resolve_command(["printf", "abc\r\nmore"], context(tmp_path)) == "abc"


# -- config files ------------------------------------------------------------------------------------
def test_validate_a_fifo_is_an_error_not_a_hang(tmp_path: Path) -> None:
    with fifo(tmp_path / "tokenflow.yaml") as pipe:
        result = run_limited("validate", str(pipe))
        assert result.returncode == 2, result
        assert f"{pipe}: cannot read: it is a FIFO (named pipe), not a regular file" in result.stdout
        result = run_limited("token", "prod", "-c", str(pipe))  # the full path, not validate
        assert result.returncode == 2, result
        assert "FIFO" in result.stderr


def test_validate_dev_zero_is_an_error_not_3_gb(tmp_path: Path) -> None:
    result = run_limited("validate", "/dev/zero")
    assert result.returncode == 2, result
    assert "/dev/zero: cannot read: it is a character device, not a regular file" in result.stdout


def test_a_config_over_4_mib_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenflow.yaml"
    path.write_text("version: 1\n" + "# padding\n" * 450_000)  # 4.5 MB
    result = run_limited("validate", str(path))
    assert result.returncode == 2, result
    assert f"{path}: file is over 4 MiB; refusing to read it" in result.stdout


@pytest.mark.parametrize("kind", ["fifo", "device", "empty"])
def test_a_ca_bundle_that_is_not_a_pem_file_is_refused_at_load(
    tmp_path: Path, tokenflow_server: EmbeddedServer, write_config: WriteConfig, kind: str
) -> None:
    bundle = {"fifo": tmp_path / "ca.pem", "device": Path("/dev/zero"),
              "empty": tmp_path / "empty.pem"}[kind]
    with ExitStack() as stack:
        if kind == "fifo":
            stack.enter_context(fifo(bundle))
        elif kind == "empty":
            bundle.write_text("\n")
        path = write_config(profile_yaml(tokenflow_server, extra_server={"verify": str(bundle)}))
        result = run_limited("validate", str(path))
    assert result.returncode == 2, result
    expected = {"fifo": "is a FIFO (named pipe); give a PEM file of CA certificates",
                "device": "is a character device; give a PEM file of CA certificates",
                "empty": "holds no PEM certificate"}[kind]
    assert f"$.servers.ts.verify: CA bundle {bundle} {expected}" in result.stdout


LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")]
) + "\n"
# merge keys: each level copies the one before and adds 9 more references to it
MERGES = "\n".join(
    ["l0: &l0 {k0: x, k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x}"]
    + [f"l{i}: &l{i} {{<<: *l{i - 1}, "
       + ", ".join(f"m{i}{j}: *l{i - 1}" for j in range(9)) + "}" for i in range(1, 10)]
) + "\n"


@pytest.mark.parametrize("text", [LAUGHS, MERGES], ids=["aliases", "merge-keys"])
def test_yaml_expansion_bombs_are_refused_with_a_location(tmp_path: Path, text: str) -> None:
    assert len(text.encode()) < 1100
    path = tmp_path / "tokenflow.yaml"
    path.write_text(text)
    result = run_limited("validate", str(path), timeout=120)
    assert result.returncode == 2, result
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+: \S+: (more than {MAX_YAML_ALIASES:,} uses "
                     rf"of YAML aliases|the document expands to more than {MAX_YAML_NODES:,} "
                     r"values)", result.stdout, re.MULTILINE), result.stdout


def test_a_billion_laughs_stops_early_in_the_parser(tmp_path: Path) -> None:
    started = time.process_time()
    with memory_cap():
        doc, issues = parse_document(LAUGHS, "laughs.yaml", tmp_path)
    assert doc.data is None
    assert [i.message for i in issues] in (
        [f"more than {MAX_YAML_ALIASES:,} uses of YAML aliases (*name); "
         "refusing a document that expands this much"],
        [f"the document expands to more than {MAX_YAML_NODES:,} values (through YAML aliases "
         "or merge keys); refusing it"])
    assert issues[0].line > 0 and issues[0].column > 0
    assert time.process_time() - started < 60  # a bound on work, not a timing figure


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    # 2,000 profiles merging one 10-key anchor: 2,000 alias uses, about 26,000 values
    keys = ", ".join(f"k{j}: v" for j in range(8))
    text = f"defaults: &d {{grant: password, store: file, {keys}}}\n" + "".join(
        f"p{i}: {{<<: *d, server: ts, scope: [a, b]}}\n" for i in range(2000))
    doc, issues = parse_document(text, "ok.yaml", tmp_path)
    assert issues == []
    assert doc.data["p1999"]["grant"] == "password" and doc.data["p1999"]["scope"] == ["a", "b"]
    assert len(doc.data["p0"]) == 12


def test_many_aliases_of_a_small_value_are_refused(tmp_path: Path) -> None:
    """Under the node limit, but over the alias limit: 10,001 uses of one scalar."""
    text = "a: &a x\nb: [" + ", ".join(["*a"] * (MAX_YAML_ALIASES + 1)) + "]\n"
    doc, issues = parse_document(text, "many.yaml", tmp_path)
    assert doc.data is None
    assert [(i.line, i.message) for i in issues] == [
        (1, f"more than {MAX_YAML_ALIASES:,} uses of YAML aliases (*name); "
            "refusing a document that expands this much")]


def test_a_huge_document_is_refused_before_parsing(tmp_path: Path) -> None:
    doc, issues = parse_document("a: 1\n" + "#" * (4 << 20), "big.yaml", tmp_path)
    assert doc.data is None and [i.message for i in issues] == ["file is over 4 MiB"]


# -- token files -------------------------------------------------------------------------------------
def test_a_fifo_as_token_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens")
    store.directory.mkdir(mode=0o700)
    with fifo(store.path("k")) as pipe:
        with pytest.raises(cachefile.UnsafeEntry, match=r"FIFO .*; delete it"):
            cachefile.read(str(pipe))  # what the CLI's fast path calls
        with pytest.raises(StorageError, match="FIFO"):
            store.load("k")


def test_a_token_file_over_1_mib_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_bytes(b" " * ((1 << 20) + 1))
    path.chmod(0o600)
    with pytest.raises(cachefile.CorruptEntry, match="over 1 MiB"):
        cachefile.read(str(path))


def test_a_directory_as_token_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "k.json").mkdir(mode=0o700)
    with pytest.raises(cachefile.UnsafeEntry, match="a directory"):
        cachefile.read(str(tmp_path / "k.json"))
