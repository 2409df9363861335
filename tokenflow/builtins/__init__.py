"""The built-in plugins: stores, secret sources, dialects and the logging sink.

Each module is a pluggy plugin registered by :func:`tokenflow.plugins.build_plugin_host` through the
same hooks third-party plugins use; the core imports none of them directly.
"""
