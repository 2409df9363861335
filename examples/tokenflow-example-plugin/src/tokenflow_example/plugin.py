"""The hook implementations: the module named by the ``tokenflow`` entry point.

tokenflow calls the ``tokenflow_register_*`` hooks once, when it builds its plugin host, and
``tokenflow_event`` for every event. Keep this module cheap to import: every ``tokenflow`` run
that loads the full path imports it.
"""

from __future__ import annotations

from tokenflow import hookimpl
from tokenflow.events import TokenEvent
from tokenflow.plugins import SourceRegistrar, StoreRegistrar

from . import dotenv_source, jsonl_events, sqlite_store


@hookimpl
def tokenflow_register_stores(register: StoreRegistrar) -> None:
    """Register the ``sqlite`` store with the JSON Schema of its options."""
    register("sqlite", sqlite_store.sqlite_store, sqlite_store.OPTIONS_SCHEMA)


@hookimpl
def tokenflow_register_secret_sources(register: SourceRegistrar) -> None:
    """Register the ``dotenv`` source; reading a small file is cheap and has no side effects."""
    register("dotenv", dotenv_source.resolve_dotenv, dotenv_source.OPTIONS_SCHEMA,
             cache_key_safe=True)


@hookimpl
def tokenflow_event(event: TokenEvent) -> None:
    """Append the event to the file named by ``$TOKENFLOW_EXAMPLE_EVENTS`` (if set)."""
    jsonl_events.append_event(event)
