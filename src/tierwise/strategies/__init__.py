"""Strategies decide WHICH model(s) answer; see ``base`` for the contract."""

from .base import RunContext, Strategy, Target
from .single import Single

__all__ = ["RunContext", "Single", "Strategy", "Target"]
