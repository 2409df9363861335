"""Building blocks that import only the standard library.

The CLI's fast path (:mod:`tokenflow.cli.fast`) may import these and nothing else of tokenflow,
so a cache hit never pays for PyYAML, jsonschema, urllib3 or pluggy: the cache-file format, the
user's directories, the token output formats and the freshness rule live here and are shared by
the fast path, the built-in file store and the engine.
"""
