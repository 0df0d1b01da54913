"""Dedup and quality filters: MinHash signatures, LSH candidates, verified near-duplicate clusters
with a keeper policy, and the filters that flag empty, repetitive or garbled answers."""
