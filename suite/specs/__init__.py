"""Typed specs parsed once from YAML (see suite.specs.load)."""
