"""tokenflow: fetch OAuth 2.0 access tokens declaratively.

::

    import tokenflow
    flow = tokenflow.load_config("profiles/")    # a Tokenflow: the Config, plugins, sessions
    session = flow.session("prod")
    session.headers()   # {"Authorization": "Bearer ..."}

Names are imported lazily (PEP 562): ``import tokenflow`` costs almost nothing, which keeps the
CLI's cached-token path fast; the loader, urllib3 and jsonschema load when first used.
"""

from __future__ import annotations

from tokenflow.base.version import VERSION as __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    # `X as X`: explicit re-exports, so `from tokenflow import X` passes mypy --strict
    from tokenflow.api import Tokenflow as Tokenflow
    from tokenflow.api import config_from_mapping as config_from_mapping
    from tokenflow.api import load_config as load_config
    from tokenflow.config.model import Config as Config
    from tokenflow.config.model import Profile as Profile
    from tokenflow.engine.session import TokenSession as TokenSession
    from tokenflow.errors import ConfigError as ConfigError
    from tokenflow.errors import CredentialError as CredentialError
    from tokenflow.errors import PluginError as PluginError
    from tokenflow.errors import ReauthenticationRequired as ReauthenticationRequired
    from tokenflow.errors import StorageError as StorageError
    from tokenflow.errors import TokenflowError as TokenflowError
    from tokenflow.errors import TokenRequestError as TokenRequestError
    from tokenflow.errors import TransportError as TransportError
    from tokenflow.events import EventKind as EventKind
    from tokenflow.events import TokenEvent as TokenEvent
    from tokenflow.plugins.contracts import PluginContext as PluginContext
    from tokenflow.plugins.contracts import TokenStore as TokenStore
    from tokenflow.plugins.hookspecs import hookimpl as hookimpl
    from tokenflow.redact import Secret as Secret
    from tokenflow.tokens import Token as Token


_EXPORTS = {
    "load_config": "api",
    "config_from_mapping": "api",
    "Tokenflow": "api",
    "Config": "config.model",
    "Profile": "config.model",
    "TokenSession": "engine.session",
    "Token": "tokens",
    "Secret": "redact",
    "TokenEvent": "events",
    "EventKind": "events",
    "hookimpl": "plugins.hookspecs",
    "PluginContext": "plugins.contracts",
    "TokenStore": "plugins.contracts",
    "TokenflowError": "errors",
    "ConfigError": "errors",
    "CredentialError": "errors",
    "TokenRequestError": "errors",
    "ReauthenticationRequired": "errors",
    "TransportError": "errors",
    "StorageError": "errors",
    "PluginError": "errors",
}

__all__ = [
    "Config",
    "ConfigError",
    "CredentialError",
    "EventKind",
    "PluginContext",
    "PluginError",
    "Profile",
    "ReauthenticationRequired",
    "Secret",
    "StorageError",
    "Token",
    "TokenEvent",
    "TokenRequestError",
    "TokenSession",
    "TokenStore",
    "Tokenflow",
    "TokenflowError",
    "TransportError",
    "__version__",
    "config_from_mapping",
    "hookimpl",
    "load_config",
]


def __getattr__(name: str) -> object:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'tokenflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
