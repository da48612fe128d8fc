"""Prices, token counting and cost estimates before any call."""
