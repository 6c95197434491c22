"""Auxiliary tools (text normalisation, synthetic corpus generation)."""
