"""Batch-API prices: the providers' published discount for batched requests.

The discount per provider lives in the built-in price table (``[batch]`` in
``data/prices.toml``, dated and sourced like every price); these helpers read it
and apply it. Public through ``tierwise.catalog``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalog import ModelSpec
    from .types import Usage

__all__ = ["batch_cost", "batch_discount"]

_BATCH: dict[str, float] | None = None


def batch_discount(provider: str) -> float | None:
    """The built-in table's batch-API discount for ``provider`` (0.5 = half price),
    or ``None`` when the provider has no published batch price."""
    global _BATCH
    if _BATCH is None:
        import tomllib

        from ._catalog_rows import _read_builtin_text

        table = tomllib.loads(_read_builtin_text()).get("batch", {})
        _BATCH = {str(k).casefold(): float(v) for k, v in table.items() if isinstance(v, int | float)}
    return _BATCH.get(provider.casefold())


def batch_cost(spec: ModelSpec, usage: Usage, discount: float) -> float | None:
    """``usage`` priced at the batch rate: every token price times ``1 - discount``."""
    from .catalog import compute_cost

    cost = compute_cost(spec, usage)
    return None if cost is None else cost * (1.0 - discount)
