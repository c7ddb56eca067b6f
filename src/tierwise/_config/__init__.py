"""The pieces behind ``tierwise.config`` (its public module).

``schema`` is the declarative file format (pydantic models, one per section),
``strategies`` the strategy and classifier tables with their open registries,
``_refs`` the cross-reference checks run on validated data, ``build`` what turns
a validated config into objects, and ``_errors`` the translation of pydantic's
errors into one ``ConfigError`` with field paths.
"""
