"""The ``device_code`` grant (RFC 8628) against oauthlib's device authorization implementation.

Polling runs on a fake clock (the grant's sleep advances it), so ``slow_down`` and the code's
``expires_in`` are measured without waiting; every poll is a real HTTP request.
"""

from __future__ import annotations

import itertools
import logging

import pytest
from conftest import FakeClock
from grant_harness import Notice, RealContext
from independent_server import (  # noqa: F401  (the fixtures are used by name)
    DEVICE_GRANT,
    PUBLIC_CLIENT,
    IndependentServer,
    IndependentServerFactory,
    independent_server_factory_fixture,
    independent_server_fixture,
)

from tokenflow.builtins.devicecode import DeviceAuthorization, DeviceCodeGrant
from tokenflow.errors import ReauthenticationRequired, TokenRequestError


class Polls:
    """The fake clock's time at every token request (what the server would see)."""

    def __init__(self, ctx: RealContext, clock: FakeClock) -> None:
        self.times: list[float] = []
        real = ctx.request_token

        def timed(params: dict[str, str]) -> object:
            self.times.append(clock.now)
            return real(params)

        ctx.request_token = timed  # type: ignore[method-assign,assignment]
        self.start = clock.now

    def gaps(self) -> list[float]:
        points = [self.start, *self.times]
        return [b - a for a, b in itertools.pairwise(points)]


def context(server: IndependentServer, clock: FakeClock, approve_after: list[str] | None = None,
            **kw: object) -> RealContext:
    """A context whose 'person' scripts the polls then approves the code they were shown."""

    def person(notice: Notice) -> None:
        if notice.user_code and notice.url and "user_code=" not in notice.url \
                and approve_after is not None:
            server.script_device([*approve_after, "authorized"], notice.user_code)

    endpoints = {"token": server.token_url, "device_authorization": server.device_url}
    return RealContext(endpoints, PUBLIC_CLIENT, clock_fn=clock, sleep_fn=clock.advance,
                       on_notify=person, **kw)  # type: ignore[arg-type]


def test_approved_code_gives_a_token_that_refreshes(
    independent_server: IndependentServer, clock: FakeClock
) -> None:
    ctx = context(independent_server, clock, approve_after=["authorization_pending"] * 2, scope="read")
    polls = Polls(ctx, clock)
    token = DeviceCodeGrant().obtain(ctx)
    assert independent_server.is_valid_access_token(token.access_token)
    assert independent_server.access_token_user(token.access_token) == independent_server.user
    assert polls.gaps() == [5.0, 5.0, 5.0]  # the default interval: the server sent none
    first, second = ctx.notices
    assert first.user_code and first.user_code in first.message
    assert first.url == independent_server.url + "/device"
    assert second.url == f"{independent_server.url}/device?user_code={first.user_code}"
    [request] = [r for r in independent_server.requests if r.path == "/oauth2/device"]
    assert request.status == 200 and set(request.param_names) == {"client_id", "scope"}
    assert token.refresh_token
    refreshed = ctx.request_token({"grant_type": "refresh_token", "refresh_token": token.refresh_token})
    assert independent_server.is_valid_access_token(refreshed.access_token)


def test_slow_down_adds_five_seconds_to_this_and_every_later_poll(
    independent_server_factory: IndependentServerFactory, clock: FakeClock
) -> None:
    server = independent_server_factory(device_interval=3)
    ctx = context(server, clock, approve_after=[
        "authorization_pending", "slow_down", "authorization_pending", "slow_down",
        "authorization_pending"])
    polls = Polls(ctx, clock)
    DeviceCodeGrant().obtain(ctx)
    assert polls.gaps() == [3.0, 3.0, 8.0, 8.0, 13.0, 13.0]


def test_http_429_counts_as_slow_down(independent_server: IndependentServer, clock: FakeClock) -> None:
    ctx = context(independent_server, clock, approve_after=[])

    def throttle_first_poll(notice: Notice) -> None:
        if notice.url and "user_code=" not in notice.url:
            independent_server.script_device(["authorized"], notice.user_code)
            independent_server.fail_next(1, status=429)

    ctx.on_notify = throttle_first_poll
    polls = Polls(ctx, clock)
    token = DeviceCodeGrant().obtain(ctx)
    assert independent_server.is_valid_access_token(token.access_token)
    assert polls.gaps() == [5.0, 10.0]


def test_access_denied_is_a_clear_error(independent_server: IndependentServer, clock: FakeClock) -> None:
    ctx = context(independent_server, clock)

    def deny(notice: Notice) -> None:
        if notice.user_code and notice.url and "user_code=" not in notice.url:
            independent_server.deny_device(notice.user_code)

    ctx.on_notify = deny
    with pytest.raises(TokenRequestError, match="denied") as caught:
        DeviceCodeGrant().obtain(ctx)
    assert caught.value.error == "access_denied"


def test_expired_token_from_the_server_is_a_clear_error(
    independent_server: IndependentServer, clock: FakeClock
) -> None:
    ctx = context(independent_server, clock)
    ctx.on_notify = lambda n: independent_server.script_device(["authorization_pending", "expired_token"],
                                                               n.user_code) \
        if n.url and "user_code=" not in n.url else None
    with pytest.raises(TokenRequestError, match="expired") as caught:
        DeviceCodeGrant().obtain(ctx)
    assert caught.value.error == "expired_token"
    assert independent_server.counts[DEVICE_GRANT] == 2


def test_expires_in_is_a_hard_deadline(
    independent_server_factory: IndependentServerFactory, clock: FakeClock
) -> None:
    server = independent_server_factory(device_expires_in=12)
    ctx = context(server, clock)  # nobody approves
    polls = Polls(ctx, clock)
    with pytest.raises(TokenRequestError, match=r"expired .*\(12 s\)") as caught:
        DeviceCodeGrant().obtain(ctx)
    assert caught.value.error == "expired_token"
    assert polls.gaps() == [5.0, 5.0]  # no poll at or after 12 s
    assert clock.now - polls.start == 12.0


def test_without_a_person_it_asks_for_tokenflow_login(
    independent_server: IndependentServer, clock: FakeClock
) -> None:
    ctx = context(independent_server, clock, interactive=False)
    with pytest.raises(ReauthenticationRequired, match="tokenflow login dev"):
        DeviceCodeGrant().obtain(ctx)
    assert independent_server.counts["total"] == 0


@pytest.mark.parametrize(("interval", "expected"), [
    (7, 7.0), ("7", 7.0), (2.5, 2.5), (None, 5.0), ("soon", 5.0), (0, 5.0), (-3, 5.0),
    (True, 5.0), (float("nan"), 5.0), (10_000, 300.0),
])
def test_interval_is_parsed_leniently(interval: object, expected: float) -> None:
    data = {"device_code": "dc-123456", "user_code": "ABCD", "verification_uri": "https://x/device",
            "expires_in": 600, "interval": interval}
    assert DeviceAuthorization(data).interval == expected


def test_a_device_answer_without_its_required_fields_is_refused() -> None:
    with pytest.raises(TokenRequestError, match="lacks device_code, user_code"):
        DeviceAuthorization({"verification_uri": "https://x/device"})
    google = DeviceAuthorization({"device_code": "dc-1234", "user_code": "A", "verification_url": "https://g/d"})
    assert google.verification_uri == "https://g/d" and google.expires_in == 600.0


def test_the_device_code_never_reaches_a_log(
    independent_server: IndependentServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    from tokenflow.redact import install_log_filters

    install_log_filters()
    caplog.set_level(logging.DEBUG)
    ctx = context(independent_server, clock, approve_after=["slow_down"])
    token = DeviceCodeGrant().obtain(ctx)
    device_code = ctx.token_requests[0]["device_code"]
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("oauthlib"))
    assert "POST /oauth2/token" in text
    for secret in (device_code, token.access_token, token.refresh_token):
        assert secret and secret not in text
