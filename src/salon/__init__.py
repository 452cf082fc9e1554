"""Salon: one gateway process that hosts many AI agents on Matrix."""

__version__ = "0.1.0"
