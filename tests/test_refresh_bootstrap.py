"""The ``refresh_token`` bootstrap grant against oauthlib's refresh token grant."""

from __future__ import annotations

import pytest
from grant_harness import RealContext
from independent_server import (  # noqa: F401  (the fixtures are used by name)
    IndependentServer,
    IndependentServerFactory,
    independent_server_factory_fixture,
    independent_server_fixture,
)

from tokenflow.builtins.refresh_bootstrap import RefreshTokenBootstrap
from tokenflow.errors import ReauthenticationRequired


def offline_token(server: IndependentServer) -> str:
    """A refresh token issued elsewhere: a person's password sign-in, done once."""
    ctx = RealContext({"token": server.token_url}, server.client_id, server.client_secret)
    token = ctx.request_token({"grant_type": "password", "username": server.username,
                               "password": server.password})
    assert token.refresh_token
    return token.refresh_token


def context(server: IndependentServer, refresh_token: str) -> RealContext:
    return RealContext({"token": server.token_url}, server.client_id, server.client_secret,
                       secrets={"refresh_token": refresh_token})


def test_rotating_server_the_new_refresh_token_is_returned(
    independent_server_factory: IndependentServerFactory,
) -> None:
    server = independent_server_factory(rotate_refresh_tokens=True)
    configured = offline_token(server)
    token = RefreshTokenBootstrap().obtain(context(server, configured))
    assert server.is_valid_access_token(token.access_token)
    assert token.refresh_token and token.refresh_token != configured
    assert not server.is_valid_refresh_token(configured)  # spent: the engine must keep the new one


def test_non_rotating_server_keeps_the_configured_refresh_token(
    independent_server: IndependentServer,
) -> None:
    configured = offline_token(independent_server)
    token = RefreshTokenBootstrap().obtain(context(independent_server, configured))
    assert independent_server.is_valid_access_token(token.access_token)
    assert token.refresh_token == configured


def test_a_refused_configured_token_says_to_issue_a_new_one(independent_server: IndependentServer) -> None:
    configured = offline_token(independent_server)
    independent_server.revoke_refresh_tokens()
    with pytest.raises(ReauthenticationRequired, match="issue a new one") as caught:
        RefreshTokenBootstrap().obtain(context(independent_server, configured))
    assert caught.value.error == "invalid_grant"
    assert configured not in str(caught.value)
