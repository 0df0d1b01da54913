"""Shared plumbing for every Tuneloop package: the workspace database, atomic files, errors.

No domain logic lives here and nothing here imports gradio or any heavy library.
"""
