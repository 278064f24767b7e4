"""Benchmarks: dataset readers, generation runners, scorers (CHAIR, CLAIR, POPE, MME, AMBER) and result tables."""
