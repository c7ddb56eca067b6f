"""``python -m tierwise``: the same as the ``tierwise`` console script, for
environments where the script is not on PATH (and for tests that must run the
CLI under the current interpreter)."""

from .cli import main

raise SystemExit(main())
