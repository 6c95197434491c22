"""The base class of every error this package raises on purpose: ``except ParaformerError`` catches them all."""
from __future__ import annotations


class ParaformerError(Exception):
    """A problem with the caller's input, files or settings; the message says what to do."""
