"""Helpers for running the docs' Python blocks (tests/test_docs_snippets.py).

``runner`` executes one page's blocks in a fresh interpreter; ``offline`` is what the
pages' hidden ``<!-- setup: ... -->`` comments import to stand in for real providers.
"""
