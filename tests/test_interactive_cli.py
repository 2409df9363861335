"""Interactive sign-in through the real CLI, against the oauthlib-based independent server.

Each test runs ``python -m tokenflow`` in a subprocess, reads what it prints on stderr, and plays
the person: follows the printed URL with an HTTP client (never a browser) or approves the device
code at the server. Ctrl-C is a real SIGINT.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from cli_driver import CliProcess
from conftest import run_cli
from grant_harness import Browser, with_param
from independent_server import (  # noqa: F401  (the fixtures are used by name)
    PUBLIC_CLIENT,
    IndependentServer,
    IndependentServerFactory,
    independent_server_factory_fixture,
    independent_server_fixture,
)

WriteConfig = Callable[..., Path]

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs a POSIX pty and signals")


def config_yaml(server: IndependentServer, grant: str, *, discovery: bool = False,
                public: bool = True, extra_profile: Mapping[str, object] | None = None) -> str:
    """One profile, ``dev``, for *server* with *grant*; endpoints written or discovered."""
    if discovery:
        server_keys: dict[str, object] = {"issuer": server.issuer}
    else:
        server_keys = {"token_url": server.token_url, "authorization_url": server.authorize_url,
                       "device_authorization_url": server.device_url, "revoke_url": server.revoke_url}
    server_keys["retries"] = 0
    client = {"client_id": PUBLIC_CLIENT} if public else {
        "client_id": server.client_id, "client_secret": server.client_secret}
    profile: dict[str, object] = {"server": "idp", "client": "app", "grant": grant, "scope": "read"}
    profile.update(extra_profile or {})
    return json.dumps({"version": 1, "servers": {"idp": server_keys}, "clients": {"app": client},
                       "profiles": {"dev": profile}})


def env(**extra: str) -> dict[str, str]:
    return {"TOKENFLOW_NO_BROWSER": "1", **extra}


def redirect_port(url: str) -> int:
    redirect = dict(parse_qsl(urlsplit(url).query))["redirect_uri"]
    return int(urlsplit(redirect).port or 0)


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def follow(url: str, tamper: Callable[[str], list[str]] | None = None) -> Browser:
    browser = Browser(tamper=tamper)
    browser._run(url)
    if browser.errors:
        raise browser.errors[0]
    return browser


def test_authcode_login_with_a_forged_callback_then_cached(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    path = write_config(config_yaml(independent_server, "authorization_code"))
    cli = CliProcess(["login", "dev", "-c", str(path), "--no-browser"], env())
    try:
        url = cli.url()
        assert url.startswith(independent_server.authorize_url + "?")
        browser = follow(url, tamper=lambda cb: [with_param(cb, "state", "forged")])
        code, _, err = cli.finish()
    finally:
        cli.kill()
    assert code == 0, err
    assert [v.status for v in browser.visits] == [302, 400, 200]
    assert independent_server.counts["authorization_code"] == 1
    # a second call makes no request at all
    again = run_cli("token", "dev", "-c", str(path), env=env())
    assert again.returncode == 0, again.stderr
    assert independent_server.is_valid_access_token(again.stdout.strip())
    assert independent_server.counts["total"] == 2  # the authorize page and the exchange


def test_token_without_a_person_names_tokenflow_login(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    path = write_config(config_yaml(independent_server, "authorization_code"))
    done = run_cli("token", "dev", "-c", str(path), env=env())
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "tokenflow login dev" in lines[0], done.stderr
    assert independent_server.counts["total"] == 0


def test_token_interactive_runs_the_sign_in(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    path = write_config(config_yaml(independent_server, "authorization_code"))
    cli = CliProcess(["token", "dev", "-c", str(path), "--interactive"], env())
    try:
        follow(cli.url())
        code, out, err = cli.finish()
    finally:
        cli.kill()
    assert code == 0, err
    assert independent_server.is_valid_access_token(out.strip())
    assert out.strip() not in err


def test_exec_credential_signs_in_with_stderr_on_a_terminal(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    """kubectl runs exec plugins with stdin not a terminal and stderr a terminal."""
    path = write_config(config_yaml(independent_server, "authorization_code", discovery=True))
    cli = CliProcess(["token", "dev", "-c", str(path), "-f", "exec-credential"], env(),
                     stderr_tty=True)
    try:
        follow(cli.url())
        code, out, err = cli.finish()
    finally:
        cli.kill()
    assert code == 0, err
    credential = json.loads(out)
    assert credential["kind"] == "ExecCredential"
    assert independent_server.is_valid_access_token(credential["status"]["token"])


def test_ctrl_c_while_waiting_for_the_browser(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    path = write_config(config_yaml(independent_server, "authorization_code"))
    cli = CliProcess(["login", "dev", "-c", str(path), "--no-browser"], env())
    try:
        port = redirect_port(cli.url())
        assert not port_is_closed(port)
        cli.interrupt()
        code, _, err = cli.finish()
    finally:
        cli.kill()
    assert code == 130, err
    assert "Traceback" not in err
    assert port_is_closed(port)


def test_device_code_login_then_refresh(
    independent_server_factory: IndependentServerFactory, write_config: WriteConfig
) -> None:
    server = independent_server_factory(device_interval=1, access_token_lifetime=120)
    path = write_config(config_yaml(server, "device_code", discovery=True,
                                    extra_profile={"refresh_margin": 200}))
    cli = CliProcess(["login", "dev", "-c", str(path)], env())
    try:
        user_code = cli.wait_for(r"enter the code (\S+)").group(1)
        cli.wait_for(rf"(?m)^{server.url}/device\?user_code={user_code}$")  # on its own line
        server.approve_device(user_code)
        code, _, err = cli.finish()
    finally:
        cli.kill()
    assert code == 0, err
    assert server.counts["device_authorization"] == 1
    cached = run_cli("token", "dev", "-c", str(path), env=env())
    assert cached.returncode == 0 and server.counts["refresh_token"] == 0
    # renewing needs no person: the device grant's refresh token is used
    done = run_cli("token", "dev", "-c", str(path), "--force-refresh", env=env())
    assert done.returncode == 0, done.stderr
    assert server.counts["refresh_token"] == 1
    assert server.is_valid_access_token(done.stdout.strip())
    assert done.stdout != cached.stdout


def test_ctrl_c_while_waiting_for_device_approval(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    path = write_config(config_yaml(independent_server, "device_code"))
    cli = CliProcess(["login", "dev", "-c", str(path)], env())
    try:
        cli.wait_for(r"enter the code")
        cli.interrupt()
        code, _, err = cli.finish()
    finally:
        cli.kill()
    assert code == 130, err
    assert "Traceback" not in err


def test_device_code_denied_exits_1(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    path = write_config(config_yaml(independent_server, "device_code"))
    cli = CliProcess(["login", "dev", "-c", str(path)], env())
    try:
        independent_server.deny_device(cli.wait_for(r"enter the code (\S+)").group(1))
        code, _, err = cli.finish()
    finally:
        cli.kill()
    assert code == 1
    assert "denied" in err.splitlines()[-1]


def test_two_processes_at_once_make_one_sign_in(
    independent_server_factory: IndependentServerFactory, write_config: WriteConfig
) -> None:
    server = independent_server_factory(device_interval=1)
    path = write_config(config_yaml(server, "device_code"))
    first = CliProcess(["token", "dev", "-c", str(path), "--interactive"], env())
    second = CliProcess(["token", "dev", "-c", str(path), "--interactive"], env())
    try:
        # one of them shows a code; the other waits for the same identity's sign-in
        user_codes: list[str] = []
        for _ in range(100):
            user_codes = server.device_user_codes()
            if user_codes:
                break
            first._read_some(0.1)
            second._read_some(0.1)
        assert len(user_codes) == 1
        server.approve_device(user_codes[0])
        results = [first.finish(), second.finish()]
    finally:
        first.kill()
        second.kill()
    assert [code for code, _, _ in results] == [0, 0], results
    assert results[0][1] == results[1][1]
    assert server.counts["device_authorization"] == 1


def test_client_credentials_from_a_discovery_only_profile(
    independent_server: IndependentServer, write_config: WriteConfig
) -> None:
    path = write_config(config_yaml(independent_server, "client_credentials", discovery=True,
                                    public=False))
    done = run_cli("token", "dev", "-c", str(path), env=env())
    assert done.returncode == 0, done.stderr
    assert independent_server.is_valid_access_token(done.stdout.strip())
    assert independent_server.counts["metadata"] == 1
    again = run_cli("token", "dev", "-c", str(path), env=env())
    assert again.stdout == done.stdout
    assert independent_server.counts["metadata"] == 1 and independent_server.counts["total"] == 2


def test_no_secret_in_debug_output(
    independent_server: IndependentServer, write_config: WriteConfig, tmp_path: Path
) -> None:
    path = write_config(config_yaml(independent_server, "authorization_code", public=False))
    cli = CliProcess(["login", "dev", "-c", str(path), "--no-browser", "-vv"], env())
    try:
        url = cli.url()
        browser = follow(url)
        code, _, err = cli.finish()
    finally:
        cli.kill()
    assert code == 0, err
    callback = browser.visits[-1].url
    params = dict(parse_qsl(urlsplit(callback).query))
    done = run_cli("token", "dev", "-c", str(path), "-f", "json", env=env())
    token = json.loads(done.stdout)["access_token"]
    assert "POST /oauth2/token" in err  # -vv did log the HTTP traffic
    # the authorization URL shown to the person carries the state (it must: the browser sends it
    # back); nothing else may
    logged = "\n".join(line for line in err.splitlines() if line != url)
    assert url in err.splitlines()
    for secret in (params["code"], params["state"], callback, token, independent_server.client_secret):
        assert secret not in logged
    assert "code_verifier=" not in err or "code_verifier=***" in err
