"""The curation tabs: one module per tab, each exposing ``build(ws)``. Wiring only; no logic."""
