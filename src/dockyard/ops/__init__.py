"""Storage operations: usage, garbage collection, cache eviction, quotas."""
