"""Profiles: the frozen model and the loader that builds it from YAML files."""
