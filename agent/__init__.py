"""Watchkeeper's runtime: config, rules, engine, ingestion, alerts and the CLI."""

__all__: list[str] = []
