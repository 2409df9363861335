"""pytest plugin (entry point ``tokenflow``) providing embedded token servers.

Why a plugin: users testing code built on tokenflow need a realistic token
endpoint with guaranteed cleanup; fixtures give them one without copying
start/stop boilerplate into every conftest.  pytest is imported only here so
that :mod:`tokenflow.testing` itself stays importable without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from tokenflow.testing.server import EmbeddedServer, ServerConfig

__all__ = ["ServerFactory", "tokenflow_server", "tokenflow_server_factory"]


class ServerFactory(Protocol):
    """Signature of the ``tokenflow_server_factory`` fixture's value."""

    def __call__(self, config: ServerConfig | None = None, /, **options: Any) -> EmbeddedServer: ...


@pytest.fixture
def tokenflow_server() -> Iterator[EmbeddedServer]:
    """A started :class:`EmbeddedServer` with default options, stopped afterwards."""
    with EmbeddedServer() as server:
        yield server


@pytest.fixture
def tokenflow_server_factory() -> Iterator[ServerFactory]:
    """Make started servers with custom options; all are stopped at teardown.

    Call it like the :class:`EmbeddedServer` constructor, e.g.
    ``tokenflow_server_factory(rotate_refresh_tokens=True, allow_get=False)``.
    """
    servers: list[EmbeddedServer] = []

    def make(config: ServerConfig | None = None, /, **options: Any) -> EmbeddedServer:
        server = EmbeddedServer(config, **options)
        servers.append(server)
        return server.start()

    yield make
    for server in reversed(servers):
        server.stop()
