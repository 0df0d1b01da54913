"""Forms rendered from options dataclasses (``core.options``), and the page's values turned back into options.

``options_form`` renders one component per field from its type and metadata: a Dropdown for choices
(a CheckboxGroup for a list of choices), a Slider for a number with both bounds, a Number otherwise,
a Checkbox for a bool, a Textbox for text (one item or ``KEY=VALUE`` per line for lists and mappings);
the help text is the component's ``info``. ``form_values`` reads a rendered form's values out of what the
page sent (a dict keyed by component, as a tab's handlers get it), and ``options_from_form`` turns them
into validated options (problems raised as one TuneloopError naming each key). Wiring is ``ui.kit.bind``.

Example::

    form = options_form(DedupOptions, only=("threshold", "keep"))     # {"threshold": Slider, "keep": Dropdown}
    options = options_from_form(DedupOptions, form_values(form, data))  # in a handler; data from the page
"""
from __future__ import annotations

import dataclasses
from typing import Any

import gradio as gr

from core.options import field_kind, label_of, options_fields


def _value_for_form(kind, value: Any) -> Any:
    if kind.is_sequence and not isinstance(value, str):
        return list(value)
    if kind.base is dict:
        return "\n".join(f"{k}={v}" for k, v in value.items())
    return value


def option_component(cls: type, f: dataclasses.Field, value: Any, *, as_keys: bool = False,
                     **kw: Any) -> gr.components.Component:
    """The component for field ``f`` of ``cls``, showing ``value`` (``as_keys``: see ``options_form``)."""
    kind, meta = field_kind(cls, f), f.metadata
    kw = {"label": f.name if as_keys else label_of(f), "info": meta["help"], **kw}
    value = _value_for_form(kind, value)
    if "choices" in meta:
        if kind.is_sequence:
            return gr.CheckboxGroup(list(meta["choices"]), value=value, **kw)
        return gr.Dropdown(list(meta["choices"]), value=value, **kw)
    if kind.base is bool:
        return gr.Checkbox(value=bool(value), **kw)
    if kind.base in (int, float) and not kind.is_sequence:
        if as_keys and not kind.optional:
            return gr.Number(value=value, precision=0 if kind.base is int else None, **kw)
        if "min" in meta and "max" in meta and not kind.optional:
            step = meta.get("step", 1 if kind.base is int else (meta["max"] - meta["min"]) / 20)
            return gr.Slider(meta["min"], meta["max"], value=value, step=step, **kw)
        if kind.optional:  # an empty Number sends 0: the form's 0 stands for "none" (see options_from_form)
            return gr.Number(value=0 if value is None else value, precision=0 if kind.base is int else None, **kw)
        return gr.Number(value=value, minimum=meta.get("min"), maximum=meta.get("max"),
                         precision=0 if kind.base is int else None, **kw)
    lines = 3 if kind.is_sequence or kind.base is dict else 1
    return gr.Textbox(value="\n".join(value) if isinstance(value, list) else (value or ""), lines=lines, **kw)


def options_form(cls: type, defaults: Any = None, *, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
                 elem_prefix: str | None = None, as_keys: bool = False) -> dict[str, gr.components.Component]:
    """One component per field of ``cls`` (showing ``defaults``, else the class defaults), in field order,
    created in the current Blocks context. With ``only`` just those fields; fields in ``skip`` and lists of
    nested options are left to the caller. With ``elem_prefix`` each component gets ``elem_id``
    ``{prefix}-{field-name}``. With ``as_keys`` the form speaks the YAML's keys (a config edited key by key):
    labels and elem ids (``{prefix}-{field_name}``) are the field names as written, and numbers are plain
    boxes without slider steps or bounds, so that any value (a learning rate of 2e-4) can be typed and one
    out of range reaches validation, which names its key."""
    defaults = defaults if defaults is not None else cls()
    form = {}
    for f in options_fields(cls):
        kind = field_kind(cls, f)
        if f.name in skip or (only is not None and f.name not in only) or (
                kind.is_sequence and dataclasses.is_dataclass(kind.item)):
            continue
        name = f.name if as_keys else f.name.replace("_", "-")
        kw = {"elem_id": f"{elem_prefix}-{name}"} if elem_prefix else {}
        form[f.name] = option_component(cls, f, getattr(defaults, f.name), as_keys=as_keys, **kw)
    return form


def form_values(form: dict[str, gr.components.Component], data: dict) -> dict[str, Any]:
    """A rendered form's values by field name, out of what the page sent (``data``, keyed by component)."""
    return {name: data[component] for name, component in form.items()}


def options_from_form(cls: type, values: dict[str, Any], *, base: Any = None):
    """Validated options from a form's values (``{field name: value}``); fields not in ``values`` come from
    ``base`` (default: the class defaults). For an optional number, 0 means none; a list typed in a
    textbox is one item per line (an item may hold commas: an allow-list name, a regex). Raises
    TuneloopError naming every bad key."""
    start = (base if base is not None else cls()).to_dict()
    values = dict(values)
    for f in options_fields(cls):
        kind = field_kind(cls, f)
        if kind.optional and kind.base in (int, float) and values.get(f.name) == 0:
            values[f.name] = None
        if kind.is_sequence and isinstance(values.get(f.name), str):
            values[f.name] = [line for line in values[f.name].splitlines() if line.strip()]
    return cls.from_dict({**start, **values}).validate()
