"""Stage 3, the engine: the only model I/O (providers, retries, the cache, rate
limiting, budgets, usage), and the only sync/async twins.
"""
