"""``python -m tokenflow.testing``: the embedded server run by hand, with a profile to try."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from conftest import run_cli


def test_the_printed_profile_works_with_the_cli(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "tokenflow.testing", "--lifetime", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        lines: list[str] = []
        for line in server.stdout:
            if line.startswith("serving until"):
                break
            lines.append(line)
        assert lines[0].startswith("token endpoint: http://127.0.0.1:")
        profile = "".join(lines[lines.index("\n") + 1:])
        config = tmp_path / "tokenflow.yaml"
        config.write_text(profile)
        first = run_cli("token", "local", "-c", str(config))
        assert first.returncode == 0, first.stderr
        second = run_cli("token", "local", "-c", str(config), "--format", "json")
        assert second.returncode == 0 and first.stdout.strip() in second.stdout
        assert '"expires_in": 1' in second.stdout  # the --lifetime of 120 s
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0


def test_a_busy_port_is_a_clear_error() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "tokenflow.testing", "--port", str(port)],
                              capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert f"cannot listen on port {port}" in done.stderr
