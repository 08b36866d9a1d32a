"""The benchmark of this service against Genkit JS's FirestoreStreamManager.

Run it with `scripts/benchmark`; docs/benchmarks.md shows the results.
"""
