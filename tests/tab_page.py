"""What a tab's page sends, for handler tests without a browser: every widget of a tab's widgets object
(``layout``'s result) with the value it starts with, keyed by component, as Gradio hands it to a handler."""
from __future__ import annotations

import gradio as gr


def components(w) -> list:
    """Every component of the widgets object: its attributes, and the items of its lists and forms (dicts)."""
    out = []
    for value in vars(w).values():
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        out += [c for c in items if isinstance(c, gr.components.Component)]
    return out


def page(w, **typed) -> dict:
    """The page's values as the tab starts, with ``typed`` changed: widget names as keywords, and for a form
    (a dict of components) a dict of its field names, e.g. ``page(w, source="v1", form={"seed": 3})``."""
    values = {c: getattr(c, "value", None) for c in components(w)}
    for name, value in typed.items():
        widget = getattr(w, name)
        if isinstance(widget, dict):
            values.update({widget[field]: v for field, v in value.items()})
        else:
            values[widget] = value
    return values
