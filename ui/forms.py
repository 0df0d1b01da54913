"""Forms rendered from options dataclasses (``core.options``), and handlers whose outputs are keyed by name.

``options_form`` renders one component per field from its type and metadata: a Dropdown for choices
(a CheckboxGroup for a list of choices), a Slider for a number with both bounds, a Number otherwise,
a Checkbox for a bool, a Textbox for text (one item or ``KEY=VALUE`` per line for lists and mappings);
the help text is the component's ``info``. ``options_from_form`` turns the values back into validated
options (problems raised as one TuneloopError naming each key). ``connect`` wires an event to a
module-level handler that returns ``{output name: value}``, so that handlers are plain functions a
test can call without a browser.

Example::

    form = options_form(DedupOptions, skip=("keep",))        # {"threshold": Slider, ...}
    options = options_from_form(DedupOptions, {"threshold": 0.7, "ngram": 5.0})
    connect(button.click, find_duplicates_view, view, inputs=["version", *form], outputs=["summary"])
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import gradio as gr

from core.options import field_kind, label_of, options_fields


def _value_for_form(kind, value: Any) -> Any:
    if kind.is_sequence and not isinstance(value, str):
        return list(value)
    if kind.base is dict:
        return "\n".join(f"{k}={v}" for k, v in value.items())
    return value


def option_component(cls: type, f: dataclasses.Field, value: Any, **kw: Any) -> gr.components.Component:
    """The component for field ``f`` of ``cls``, showing ``value``."""
    kind, meta = field_kind(cls, f), f.metadata
    kw = {"label": label_of(f), "info": meta["help"], **kw}
    value = _value_for_form(kind, value)
    if "choices" in meta:
        if kind.is_sequence:
            return gr.CheckboxGroup(list(meta["choices"]), value=value, **kw)
        return gr.Dropdown(list(meta["choices"]), value=value, **kw)
    if kind.base is bool:
        return gr.Checkbox(value=bool(value), **kw)
    if kind.base in (int, float) and not kind.is_sequence:
        if "min" in meta and "max" in meta and not kind.optional:
            step = meta.get("step", 1 if kind.base is int else (meta["max"] - meta["min"]) / 20)
            return gr.Slider(meta["min"], meta["max"], value=value, step=step, **kw)
        if kind.optional:  # an empty Number sends 0: the form's 0 stands for "none" (see options_from_form)
            return gr.Number(value=0 if value is None else value, precision=0 if kind.base is int else None, **kw)
        return gr.Number(value=value, minimum=meta.get("min"), maximum=meta.get("max"),
                         precision=0 if kind.base is int else None, **kw)
    lines = 3 if kind.is_sequence or kind.base is dict else 1
    return gr.Textbox(value="\n".join(value) if isinstance(value, list) else (value or ""), lines=lines, **kw)


def options_form(cls: type, defaults: Any = None, *, skip: tuple[str, ...] = (),
                 elem_prefix: str | None = None) -> dict[str, gr.components.Component]:
    """One component per field of ``cls`` (showing ``defaults``, else the class defaults), in field order,
    created in the current Blocks context. Fields in ``skip`` and lists of nested options are left to the
    caller. With ``elem_prefix`` each component gets ``elem_id`` ``{prefix}-{field-name}``."""
    defaults = defaults if defaults is not None else cls()
    form = {}
    for f in options_fields(cls):
        kind = field_kind(cls, f)
        if f.name in skip or (kind.is_sequence and dataclasses.is_dataclass(kind.item)):
            continue
        kw = {"elem_id": f"{elem_prefix}-{f.name.replace('_', '-')}"} if elem_prefix else {}
        form[f.name] = option_component(cls, f, getattr(defaults, f.name), **kw)
    return form


def options_from_form(cls: type, values: dict[str, Any], *, base: Any = None):
    """Validated options from a form's values (``{field name: value}``); fields not in ``values`` come from
    ``base`` (default: the class defaults). For an optional number, 0 means none. Raises TuneloopError
    naming every bad key."""
    start = (base if base is not None else cls()).to_dict()
    values = dict(values)
    for f in options_fields(cls):
        kind = field_kind(cls, f)
        if kind.optional and kind.base in (int, float) and values.get(f.name) == 0:
            values[f.name] = None
    return cls.from_dict({**start, **values}).validate()


def connect(event: Callable, handler: Callable[..., dict[str, Any]], view: dict[str, Any], *,
            inputs: list[str], outputs: list[str], **kw: Any):
    """Wire ``event`` (``button.click``, ``dropdown.change`` …) to ``handler(*values of inputs)``, which returns
    ``{output name: value}``; outputs it leaves out are unchanged. ``view`` maps names to components (and
    ``gr.State``s). A handler that takes ``request`` or ``progress`` gets Gradio's request and progress."""
    wants = inspect.signature(handler).parameters

    def run(*values, request: gr.Request = None, progress=gr.Progress()):
        extra = {}
        if "request" in wants:
            extra["request"] = request
        if "progress" in wants:
            extra["progress"] = progress
        out = handler(*values, **extra)
        unknown = set(out) - set(outputs)
        if unknown:
            raise KeyError(f"{name} returned outputs it is not wired to: {', '.join(sorted(unknown))}")
        return [out.get(key, gr.update()) for key in outputs]

    name = getattr(handler, "func", handler).__name__
    run.__name__ = name
    return event(run, [view[name] for name in inputs], [view[name] for name in outputs], **kw)
