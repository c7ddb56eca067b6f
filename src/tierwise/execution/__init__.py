"""Execution layer: rate limits, retries, health, budgets and caching around every model call."""
