"""Shared fixtures: a temporary workspace, sample files, and (in browser.py) a live app + Chromium."""
from __future__ import annotations

import json
import os
from pathlib import Path

# Nothing in the suite may reach a model hub: everything it loads is shipped or built here.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from core.workspace import Workspace

pytest_plugins = ["tests.browser"]


@pytest.fixture
def ws(tmp_path) -> Workspace:
    """A fresh, migrated workspace in a temp folder (real SQLite)."""
    return Workspace.open(tmp_path / "workspace")


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def chat(user: str, assistant: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}], **extra}
