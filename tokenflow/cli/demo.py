"""``tokenflow demo``: the token life cycle against the embedded server, in a few seconds:
fetch, cache hit, refresh, re-authentication, revocation, and a device-code sign-in.

The demo runs a real HTTP server on a loopback port and a real file store in a temporary
directory; only time is simulated (one clock shared by server and client), so an hour-long
token life fits in a second.
"""

from __future__ import annotations

import sys
import tempfile
import time

from tokenflow.events import EventKind, TokenEvent
from tokenflow.plugins.hookspecs import hookimpl


class _Clock:
    """Wall-clock time plus a jump the demo controls."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class _Narrator:
    """A plugin that prints each event as it happens: the demo uses the same hooks as users."""

    def __init__(self) -> None:
        self.seen: list[EventKind] = []

    @hookimpl
    def tokenflow_event(self, event: TokenEvent) -> None:
        if event.kind is EventKind.STORED:
            return
        self.seen.append(event.kind)
        extra = f" error={event.error}" if event.error else ""
        token = f" token={event.fingerprint}" if event.fingerprint else ""
        _say(f"    event: {event.kind.value}{token}{extra} ({event.duration * 1000:.1f} ms)")


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_demo(fast: bool = False) -> int:
    """Walk through fetch, cache hit, refresh and re-authentication; 0 when all went as shown."""
    from tokenflow.api import config_from_mapping
    from tokenflow.engine.session import LoginPrompt
    from tokenflow.plugins.host import build_plugin_host
    from tokenflow.testing import EmbeddedServer

    pause = 0.0 if fast else 0.6
    clock = _Clock()
    narrator = _Narrator()
    with EmbeddedServer(access_token_lifetime=3600, clock=clock, device_poll_interval=1) as server, \
            tempfile.TemporaryDirectory(prefix="tokenflow-demo-") as cache:
        _say(f"Embedded Team Server-style token endpoint at {server.token_url}")
        data = {
            "version": 1,
            "servers": {"demo": {"token_url": server.token_url, "dialect": "teamserver",
                                 "revoke_url": server.revoke_url_template}},
            "clients": {"er-studio": {"client_id": server.default_client.client_id,
                                      "client_secret": server.default_client.secret}},
            "profiles": {"demo": {"server": "demo", "client": "er-studio", "grant": "password",
                                  "username": server.default_account.username,
                                  "password": server.default_account.password,
                                  "scope": "read write", "refresh_margin": 60},
                         # a person at a terminal: the device grant (RFC 8628), a public
                         # client, endpoints discovered from the issuer (RFC 8414)
                         "tv": {"server": "signin", "client": "cli", "grant": "device_code",
                                "scope": "read"}},
        }
        data["servers"]["signin"] = {"issuer": server.issuer}  # type: ignore[index]
        data["clients"]["cli"] = {"client_id": server.default_public_client_id}  # type: ignore[index]
        config = config_from_mapping(data, source="demo", cache_dir=cache,
                                     plugins=build_plugin_host([narrator]))
        session = config.session("demo", clock=clock)

        steps = [
            ("1. First call: nothing cached, so the password grant runs (GET, query string)", None),
            ("2. Second call: the token is fresh, so it comes from memory: no request", None),
            ("3. 59 minutes later: inside the 60 s refresh margin, so the refresh grant runs",
             3540.0),
            ("4. The server forgets its refresh tokens; an hour later the refresh is refused,\n"
             "   so tokenflow signs in again with the password grant", 3600.0),
        ]
        for number, (title, jump) in enumerate(steps):
            time.sleep(pause)
            _say("")
            _say(title)
            if jump:
                clock.offset += jump
            if number == 3:
                server.revoke_refresh_tokens()
            before = dict(server.counts)
            token = session.token()
            after = server.counts
            made = {k: after[k] - before.get(k, 0) for k in ("password", "refresh_token")}
            _say(f"    token {token.fingerprint} expires in {token.expires_in(clock()):.0f} s; "
                 f"requests: password={made['password']} refresh={made['refresh_token']}")
        time.sleep(pause)
        _say("")
        _say("5. Status (read from the file store, no network):")
        report = session.status()
        _say(f"    state={report.state.value} token={report.fingerprint} "
             f"refresh token={'yes' if report.has_refresh_token else 'no'}")
        _say("6. Logout with revocation (DELETE /api/revoketoken/...):")
        session.logout(revoke=True)
        valid = server.is_valid_access_token(token.access_token)
        _say(f"    server still accepts the token: {valid}")

        time.sleep(pause)
        _say("")
        _say("7. Signing in as a person with a device code (endpoints discovered from the issuer):")

        approved: list[str] = []

        def approve(prompt: LoginPrompt) -> None:
            _say(f"    tokenflow says: {prompt.message}" + (f" {prompt.url}" if prompt.url else ""))
            if prompt.user_code and not approved:  # the person approves on another device
                approved.append(server.approve_device(prompt.user_code).user_code)
                _say(f"    (the demo enters {prompt.user_code} and approves, as that person would)")

        def wait(seconds: float) -> None:  # polls at the server's interval, on the demo's clock
            clock.offset += seconds

        device = config.session("tv", clock=clock, sleep=wait, login=approve, interactive=True)
        signed_in = device.token()
        _say(f"    token {signed_in.fingerprint} for profile tv; device polls: "
             f"{server.counts['device_code']}; a second call is served from memory: "
             f"{device.token().fingerprint == signed_in.fingerprint}")
        config.close()
    expected = [EventKind.FETCHED, EventKind.REFRESHED, EventKind.REFRESH_REJECTED,
                EventKind.REAUTHENTICATED, EventKind.LOGIN_REQUIRED]
    ok = all(kind in narrator.seen for kind in expected) and not valid
    _say("")
    _say("Demo complete: fetch, cache hit, refresh, re-authentication and a device sign-in "
         "all worked." if ok
         else "Demo finished, but not every step behaved as expected.")
    return 0 if ok else 1
