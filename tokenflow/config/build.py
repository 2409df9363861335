"""Building the model: what the schema cannot check (references between servers, clients and
profiles, required keys after ``extends``, plugin parts with their option schemas, URLs and
headers that may be sent) and the frozen dataclasses of :mod:`tokenflow.config.model`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tokenflow.config.assembly import Assembly, Entry, known
from tokenflow.config.model import (
    DEFAULT_LIFETIME,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ClientSpec,
    Config,
    Profile,
    SecretSpec,
    ServerSpec,
    StoreSpec,
)
from tokenflow.config.schema import schema_issues
from tokenflow.config.yamldoc import Document, JsonPath
from tokenflow.errors import ConfigError, ConfigIssue
from tokenflow.redact import Secret, remember_secret

__all__ = ["ModelBuilder", "sorted_issues"]

MAX_CA_BUNDLE_BYTES = 16 * 1024 * 1024  # certifi's bundle is about 300 KB


def _ca_bundle_problem(bundle: Path) -> str | None:
    """Why *bundle* cannot serve as ``verify: PATH`` (found now, not at the first request).

    Read like every local input (a regular file, bounded): OpenSSL would wait for ever on a
    FIFO named here.
    """
    from tokenflow.base import boundedread

    if bundle.is_dir():
        return "is a directory; give a PEM file of CA certificates"
    try:
        pem = boundedread.read_limited(str(bundle), MAX_CA_BUNDLE_BYTES)
    except FileNotFoundError:
        return "does not exist"
    except boundedread.NotRegularFile as exc:
        return f"is {exc.kind}; give a PEM file of CA certificates"
    except boundedread.FileTooLarge:
        return f"is over {MAX_CA_BUNDLE_BYTES >> 20} MiB; give a PEM file of CA certificates"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if not pem.strip():
        return "holds no PEM certificate"
    import ssl

    try:
        ssl.create_default_context(cadata=pem.decode("ascii"))
    except (ssl.SSLError, ValueError):  # UnicodeDecodeError is a ValueError
        return "holds no PEM certificate"
    return None


def _is_loopback_url(url: str) -> bool:
    """Whether *url* goes to this machine, read as the transport will connect to it."""
    from tokenflow.wire import parse_server_url

    parsed = parse_server_url(url)
    return not isinstance(parsed, str) and parsed.is_loopback


class ModelBuilder:
    """Step 6 and 7: cross-checks and the frozen model."""

    def __init__(self, asm: Assembly, environ: Mapping[str, str]) -> None:
        self.asm = asm
        self.host = asm.host
        self.environ = environ
        self.issues = asm.issues

    def server(self, entry: Entry) -> ServerSpec | None:
        data, doc, base = entry.data, entry.doc, ("servers", entry.name)
        ok = True
        dialect = data.get("dialect", "rfc6749")
        if dialect not in self.host.dialects:
            self.issues.append(doc.issue((*base, "dialect"),
                                         f"unknown dialect {dialect!r}{known(self.host.dialects)}"))
            ok = False
        insecure_ok = bool(data.get("allow_insecure_http", False))
        from tokenflow.wire import header_problem, parse_server_url

        for key in ("token_url", "revoke_url", "issuer", "authorization_url",
                    "device_authorization_url"):
            url = data.get(key)
            problem = parse_server_url(url) if isinstance(url, str) else None
            if isinstance(problem, str):  # never echo the URL: it may carry a secret
                self.issues.append(doc.issue((*base, key), problem))
                ok = False
            elif isinstance(url, str) and url.lower().startswith("http://") and not insecure_ok \
                    and not _is_loopback_url(url):
                self.issues.append(doc.issue((*base, key), (
                    "http:// to a host that is not loopback would send credentials and tokens in "
                    "clear text; use https:// or set allow_insecure_http: true")))
                ok = False
        headers = dict(data.get("headers", {}))
        for name, value in headers.items():
            remember_secret(value)  # an API key often rides here: scrub it like a password
            bad = header_problem(name, value)
            if bad:
                self.issues.append(doc.issue((*base, "headers", name), bad))
                ok = False
        verify: bool | str = data.get("verify", True)
        if isinstance(verify, str):
            bundle = Path(verify).expanduser()
            if not bundle.is_absolute():
                bundle = doc.base_dir / bundle
            problem = _ca_bundle_problem(bundle)
            if problem:
                self.issues.append(doc.issue((*base, "verify"), f"CA bundle {bundle} {problem}"))
                ok = False
            verify = str(bundle)
        if not ok or entry.name in self.asm.broken["servers"]:
            return None
        return ServerSpec(
            name=entry.name,
            token_url=data.get("token_url"),
            dialect=dialect,
            client_auth=data.get("client_auth"),
            revoke_url=data.get("revoke_url"),
            issuer=data.get("issuer"),
            authorization_url=data.get("authorization_url"),
            device_authorization_url=data.get("device_authorization_url"),
            timeout=float(data.get("timeout", DEFAULT_TIMEOUT)),
            retries=int(data.get("retries", DEFAULT_RETRIES)),
            verify=verify,
            allow_insecure_http=insecure_ok,
            headers=headers,
        )

    def secret(self, value: Any, doc: Document, path: JsonPath) -> SecretSpec | None:
        where = doc.location(path)
        if isinstance(value, str):
            return SecretSpec("literal", Secret(value), doc.base_dir, where)
        if not isinstance(value, dict) or len(value) != 1:
            self.issues.append(doc.issue(path, "expected a string or one source mapping"))
            return None
        ((kind, options),) = value.items()
        entry = self.host.sources.get(kind)
        if entry is None:
            self.issues.append(doc.issue((*path, kind), f"unknown secret source {kind!r}"
                                                        f"{known(self.host.sources)}", key=True))
            return None
        if entry.options_schema is not None:
            found = [i for _, i in schema_issues(doc, options, entry.options_schema, (*path, kind))]
            if found:
                self.issues.extend(found)
                return None
        return SecretSpec(kind, options, doc.base_dir, where)

    def client(self, entry: Entry) -> ClientSpec | None:
        data, doc = entry.data, entry.doc
        secret = None
        if "client_secret" in data:
            secret = self.secret(data["client_secret"], doc, ("clients", entry.name, "client_secret"))
            if secret is None:
                return None
        if entry.name in self.asm.broken["clients"]:
            return None
        return ClientSpec(entry.name, data["client_id"], secret)

    def store(self, value: Any, entry: Entry, path: JsonPath) -> StoreSpec | None:
        doc = entry.doc
        options: Any = {}
        if isinstance(value, str):
            name = value
        else:
            ((name, options),) = value.items()
            path = (*path, name)
        store = self.host.stores.get(name)
        if store is None:
            self.issues.append(doc.issue(path, f"unknown store {name!r}{known(self.host.stores)}",
                                         key=not isinstance(value, str)))
            return None
        if options is None:
            options = {}
        if store.options_schema is not None:
            found = [i for _, i in schema_issues(doc, options, store.options_schema, path)]
            if found:
                self.issues.extend(found)
                return None
        if not isinstance(options, dict):
            self.issues.append(doc.issue(path, "store options must be a mapping"))
            return None
        return StoreSpec(name, options, doc.base_dir)

    def profile(
        self,
        name: str,
        keys: Mapping[str, tuple[Any, Entry]],
        lineage: tuple[str, ...],
        servers: Mapping[str, ServerSpec | None],
        clients: Mapping[str, ClientSpec | None],
    ) -> Profile | None:
        own = self.asm.sections["profiles"][name]

        def at(key: str) -> tuple[Document, JsonPath]:
            value_entry = keys[key][1] if key in keys else own
            return value_entry.doc, ("profiles", value_entry.name, key)

        profiles = self.asm.sections["profiles"]
        chain = [profiles[member] for member in (name, *lineage)]
        bad = frozenset().union(*(member.bad for member in chain))  # reported by the schema
        if "extends" in bad:
            return None  # which keys it should have inherited is unknown
        missing = [k for k in ("server", "client", "grant") if k not in keys and k not in bad]
        if missing:
            via = f" (after extends {' -> '.join(lineage)})" if lineage else ""
            self.issues.append(own.doc.issue(
                ("profiles", name), f"profile {name!r} needs {', '.join(missing)}{via}", key=True))
            return None
        value: dict[str, Any] = {k: v for k, (v, _) in keys.items()}
        # a profile with schema errors, or without a well-formed server, client or grant, is
        # checked but never built
        ok = not any(member.name in self.asm.broken["profiles"] for member in chain) and all(
            k in value for k in ("server", "client", "grant"))
        broken = self.asm.broken
        server = servers.get(value.get("server", ""))
        if "server" in value and value["server"] not in servers \
                and value["server"] not in broken["servers"]:
            doc, path = at("server")
            self.issues.append(doc.issue(path, f"unknown server {value['server']!r}{known(servers)}"))
            ok = False
        client = clients.get(value.get("client", ""))
        if "client" in value and value["client"] not in clients \
                and value["client"] not in broken["clients"]:
            doc, path = at("client")
            self.issues.append(doc.issue(path, f"unknown client {value['client']!r}{known(clients)}"))
            ok = False
        grant_options = self.grant_options(name, value, at, own, bad) if "grant" in value else None
        ok = ok and grant_options is not None
        store_spec: StoreSpec | None = StoreSpec("file", {}, own.doc.base_dir)
        if "store" in value:
            doc_entry = keys["store"][1]
            store_spec = self.store(value["store"], doc_entry, ("profiles", doc_entry.name, "store"))
            ok = ok and store_spec is not None
        if not ok or server is None or client is None or store_spec is None:
            return None
        scope = value.get("scope")
        if isinstance(scope, list):
            scope = " ".join(scope)
        return Profile(
            name=name,
            server=server,
            client=client,
            grant=value["grant"],
            grant_options=grant_options or {},
            scope=scope or None,
            store=store_spec,
            refresh_margin=float(value.get("refresh_margin", DEFAULT_REFRESH_MARGIN)),
            default_lifetime=float(value.get("default_lifetime", DEFAULT_LIFETIME)),
            params=dict(value.get("params", {})),
            token_placement=str(value.get("token_placement", "header")),
            description=str(value.get("description", "")),
            where=own.doc.location(("profiles", name)),
            extends=lineage,
        )

    def grant_options(
        self,
        name: str,
        value: Mapping[str, Any],
        at: Callable[[str], tuple[Document, JsonPath]],
        own: Entry,
        bad: frozenset[str] = frozenset(),
    ) -> dict[str, Any] | None:
        """The profile's keys that its grant declares, checked against the grant's schema
        (*bad*: keys the document schema already refused, not reported again as missing)."""
        grant = value["grant"]
        entry = self.host.grants.get(grant)
        if entry is None:
            doc, path = at("grant")
            self.issues.append(doc.issue(path, f"unknown grant {grant!r}{known(self.host.grants)}"))
            return None
        schema = entry.options_schema or {}
        secret_keys = set(entry.grant.secret_options)
        options: dict[str, Any] = {}
        ok = True
        for key in schema.get("required", ()):
            if key not in value and key not in bad:
                self.issues.append(own.doc.issue(("profiles", name),
                                                 f"the {grant} grant needs {key}", key=True))
                ok = False
        for key, key_schema in (schema.get("properties") or {}).items():
            if key not in value:
                continue
            doc, path = at(key)
            if key in secret_keys:
                spec = self.secret(value[key], doc, path)
                ok = ok and spec is not None
                options[key] = spec
                continue
            found = [i for _, i in schema_issues(doc, value[key], key_schema, path)]
            self.issues.extend(found)
            ok = ok and not found
            options[key] = value[key]
        return options if ok else None

    def build(self, files: tuple[Path, ...], cache_dir: Path) -> Config:
        sections = self.asm.sections
        servers = {name: self.server(e) for name, e in sections["servers"].items()}
        clients = {name: self.client(e) for name, e in sections["clients"].items()}
        profiles: dict[str, Profile] = {}
        abstract: set[str] = set()
        for name, (keys, lineage) in self.asm.resolve_profiles().items():
            if keys.get("abstract", (False, None))[0] is True:
                abstract.add(name)
                continue
            profile = self.profile(name, keys, lineage, servers, clients)
            if profile is not None:
                profiles[name] = profile
        if self.issues:
            raise ConfigError(sorted_issues(self.issues))
        return Config(
            profiles=profiles,
            abstract_profiles=frozenset(abstract),
            servers={k: v for k, v in servers.items() if v is not None},
            clients={k: v for k, v in clients.items() if v is not None},
            files=files,
            cache_dir=cache_dir,
            env_used=frozenset(self.asm.used_env),
        )


def sorted_issues(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: (i.file, i.line, i.column))
