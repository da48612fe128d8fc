"""Many images: the online batch core, the provider Batch API path, and the lock
that keeps one writer per output.
"""
