"""The loop flows one way, and only UI modules touch gradio: checked on every import statement in the tree.

Layers, lowest first: core ← curation ← training ← evaluation ← ui ← app. A module may import its own layer
and the ones below, never one above (not even lazily inside a function). Only UI modules (``ui/``, any
``ui.py``/``*_ui.py``, a package's ``ui/`` folder, ``app.py``) may import gradio; a package's UI modules may also
use the UI kit (``ui``), but still no package above their own.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["core", "curation", "training", "evaluation", "ui", "app"]


def modules() -> list[Path]:
    return sorted(p for top in LAYERS for p in (ROOT.glob(f"{top}/**/*.py") if top != "app" else [ROOT / "app.py"]))


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every import in the file, wherever it stands."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def layer_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return "app" if rel.name == "app.py" and len(rel.parts) == 1 else rel.parts[0]


def is_ui(path: Path) -> bool:
    rel = path.relative_to(ROOT)
    return (rel.parts[0] in ("ui", "app.py") or rel.name == "ui.py" or rel.name.endswith("_ui.py")
            or "ui" in rel.parts[1:-1])


def upward_imports(paths) -> list[str]:
    found = []
    for path in paths:
        mine = LAYERS.index(layer_of(path))
        for line, top in imported(path):
            if top == "ui" and is_ui(path):
                continue
            if top in LAYERS and LAYERS.index(top) > mine:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
    return found


def gradio_outside_ui(paths) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports gradio" for path in paths if not is_ui(path)
            for line, top in imported(path) if top in ("gradio", "gradio_client")]


def test_no_package_imports_a_higher_one():
    assert modules(), "no modules found: the layer list is out of date"
    assert upward_imports(modules()) == []


def test_only_ui_modules_import_gradio():
    assert gradio_outside_ui(modules()) == []


@pytest.mark.parametrize("source, where, problem", [
    ("def f():\n    from evaluation.feedback import collect_feedback\n", "curation/x.py", "upward"),
    ("import training.models\n", "core/x.py", "upward"),
    ("import gradio as gr\n", "training/x.py", "gradio"),
    ("from training.registry import list_runs\n", "curation/ui/x.py", "upward"),
    ("from ui.kit import bind\n", "training/x.py", "upward"),
])
def test_the_checks_catch_a_violation(tmp_path, monkeypatch, source, where, problem):
    fake = tmp_path / where
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    found = upward_imports([fake]) if problem == "upward" else gradio_outside_ui([fake])
    assert len(found) == 1 and where in found[0]
