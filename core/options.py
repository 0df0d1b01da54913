"""Options dataclasses: one per stage, the single source of the stage's parameters.

A stage declares its parameters once, as a dataclass whose fields are made with ``option`` (a default,
a help text a domain expert can read, and optional ``choices``, ``min``, ``max``, ``label``, ``flag``).
From that one declaration come: validation (``problems`` / ``validate``, every problem naming its key),
conversion (``to_dict`` / ``from_dict``, values coerced to the field's type, unknown keys an error that
names them), YAML (``to_yaml`` / ``from_yaml`` / ``save`` / ``load``), the CLI flags (``add_arguments`` /
``from_args``) and, in the UI layer, the tab's form (``ui.forms``). Nothing here imports gradio.

Field types understood: ``bool``, ``int``, ``float``, ``str``, each optionally ``| None``; ``list[str]``
and ``tuple[str, ...]`` (``choices`` then applies to every item); ``dict[str, float]`` /
``dict[str, str]`` (``KEY=VALUE`` on the command line); ``list[SomeDataclass]`` (YAML only, no flag).

Example::

    @dataclass
    class DedupOptions(Options):
        what = "dedup options"
        threshold: float = option(0.6, "near-duplicate similarity", min=0.0, max=1.0)
        keep: str = option("first", "which record of a cluster stays", choices=("first", "longest"))

    parser = argparse.ArgumentParser(); add_arguments(parser, DedupOptions)
    options = from_args(DedupOptions, parser.parse_args(["--threshold", "0.7"]))   # validated
    DedupOptions.load("dedup.yaml"); options.save("dedup.yaml")
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

from core.errors import TuneloopError
from core.workspace import atomic_write

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def option(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field with its help text and metadata (``choices``, ``min``, ``max``, ``label``, ``flag``).

    ``label`` is the form's label (default: the name in words); ``flag`` the CLI flag when it should differ
    from the field name. A list, tuple or dict default is copied for every instance.
    """
    metadata = {"help": help, **extra}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# -- what a field holds ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FieldKind:
    """What a field holds, read off its annotation: ``base`` is bool/int/float/str/list/tuple/dict;
    ``item`` the type of a sequence's items or a dict's values; ``optional`` whether None is allowed."""
    base: type
    item: Any = None
    optional: bool = False

    @property
    def is_sequence(self) -> bool:
        return self.base in (list, tuple)


def field_kind(cls: type, f: dataclasses.Field) -> FieldKind:
    """The kind of field ``f`` of options class ``cls``."""
    hint = typing.get_type_hints(cls)[f.name]
    optional = False
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        optional = True
        rest = [a for a in args if a is not type(None)]
        hint = rest[0]
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return FieldKind(origin, typing.get_args(hint)[0], optional)
    if origin is dict:
        return FieldKind(dict, typing.get_args(hint)[1], optional)
    return FieldKind(hint, None, optional)


def options_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of an options class, in declaration order (form order)."""
    return list(dataclasses.fields(cls))


def label_of(f: dataclasses.Field) -> str:
    """A field's label for a form: its ``label`` metadata, else its name in words."""
    return f.metadata.get("label") or f.name.replace("_", " ").capitalize()


def _coerce_scalar(value: Any, base: type) -> Any:
    if base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(value)
    if base is int:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    if base is float:
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    if base is str:
        return "" if value is None else str(value)
    if dataclasses.is_dataclass(base):
        if isinstance(value, base):
            return value
        if not isinstance(value, dict):
            raise TypeError(value)
        if issubclass(base, Options):
            return base.from_dict(value)
        return base(**value)
    raise TypeError(f"options cannot hold {base!r}")


def coerce(kind: FieldKind, value: Any) -> Any:
    """``value`` (from YAML, a form or the command line) as the field's type; raises ValueError/TypeError."""
    if kind.optional and (value is None or (isinstance(value, str) and not value.strip())):
        return None
    if kind.is_sequence:
        if isinstance(value, str):
            value = [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise TypeError(value)
        return kind.base(_coerce_scalar(v, kind.item) for v in value)
    if kind.base is dict:
        if isinstance(value, str):
            value = [part for part in value.replace("\n", ",").split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            pairs = {}
            for part in value:
                key, sep, item = str(part).partition("=")
                if not sep or not key.strip():
                    raise ValueError(part)
                pairs[key.strip()] = item.strip()
            value = pairs
        if not isinstance(value, dict):
            raise TypeError(value)
        return {str(k): _coerce_scalar(v, kind.item) for k, v in value.items()}
    return _coerce_scalar(value, kind.base)


def _kind_words(kind: FieldKind) -> str:
    if kind.is_sequence:
        return "list"
    if kind.base is dict:
        return "mapping of KEY=VALUE"
    return {bool: "true/false", int: "whole number", float: "number", str: "text"}.get(kind.base, "value")


# -- the mixin ----------------------------------------------------------------------------------------

class Options:
    """Validation, conversion and YAML for an options dataclass whose fields come from ``option``.

    ``what`` names the options in messages ("there are problems with the dedup options"); a subclass adds checks
    that involve several fields in ``more_problems``.
    """
    what: ClassVar[str] = "options"

    def more_problems(self) -> list[str]:
        """Problems the field metadata cannot express (several fields together); each names its key."""
        return []

    def problems(self) -> list[str]:
        """Every problem with these options, each naming its key and saying what to do."""
        out = []
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None:
                continue
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            if "choices" in meta:
                bad = [v for v in items if v not in meta["choices"]]
                if bad:
                    out.append(f"{f.name}: '{bad[0]}' is not one of {', '.join(map(str, meta['choices']))}")
            for v in items:
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                if isinstance(v, float) and not math.isfinite(v):
                    out.append(f"{f.name}: must be a number")
                elif "min" in meta and v < meta["min"]:
                    out.append(f"{f.name}: {v} is too small; it must be at least {meta['min']}")
                elif "max" in meta and v > meta["max"]:
                    out.append(f"{f.name}: {v} is too large; it must be at most {meta['max']}")
        return out + self.more_problems()

    def validate(self):
        """Self, or a TuneloopError listing every problem."""
        problems = self.problems()
        if problems:
            raise TuneloopError(f"there are problems with the {self.what}; nothing was changed:\n  " + "\n  ".join(problems))
        return self

    # -- conversion ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples): what YAML, JSON and a version's params hold."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None):
        """Built from a mapping (YAML, a form, saved params); values coerced to each field's type. Unknown
        keys and values of the wrong type are errors naming the key. Not validated: call ``validate``."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise TuneloopError(f"the {cls.what} are a mapping of keys to values (YAML: `key: value` lines)")
        known = {f.name: f for f in dataclasses.fields(cls)}
        problems, values = [], {}
        for key, value in data.items():
            if key not in known:
                close = [k for k in known if k.replace("_", "") == str(key).replace("_", "").replace("-", "").lower()]
                hint = f"; did you mean {close[0]}?" if close else f"; the keys are {', '.join(known)}"
                problems.append(f"{key}: not a key of the {cls.what}{hint}")
                continue
            kind = field_kind(cls, known[key])
            try:
                values[key] = coerce(kind, value)
            except (TypeError, ValueError):
                problems.append(f"{key}: '{value}' is not a valid {_kind_words(kind)}")
            except TuneloopError as exc:
                problems.append(f"{key}: {exc}")
        if problems:
            raise TuneloopError(f"there are problems with the {cls.what}; nothing was changed:\n  " + "\n  ".join(problems))
        return cls(**values)

    def replace(self, **changes):
        """A copy with ``changes`` applied (coerced like ``from_dict``)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    # -- YAML --------------------------------------------------------------------------------------
    def to_yaml(self) -> str:
        import yaml
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "options"):
        import yaml
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TuneloopError(f"{source} is not valid YAML: {exc}") from exc
        try:
            return cls.from_dict(data)
        except TuneloopError as exc:
            raise TuneloopError(f"{source}: {exc}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write these options as YAML (atomically)."""
        path = Path(path)
        atomic_write(path, self.to_yaml().encode("utf-8"))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Options from a YAML file; keys left out keep their defaults."""
        path = Path(path)
        if not path.is_file():
            raise TuneloopError(f"options file '{path}' does not exist")
        return cls.from_yaml(path.read_text(encoding="utf-8"), source=str(path))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- the command line ------------------------------------------------------------------------------

def flag_of(f: dataclasses.Field) -> str:
    """The CLI flag of a field: ``--num-perm`` for ``num_perm`` (or its ``flag`` metadata)."""
    return "--" + f.metadata.get("flag", f.name).replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """A flag per field of ``cls`` (help and choices from the field; bools as ``--x/--no-x``), and
    ``--options FILE`` for a YAML of them. Flags given on the command line win over the file."""
    group = parser.add_argument_group(cls.what)
    group.add_argument("--options", metavar="FILE", dest="options_file",
                       help=f"a YAML file of {cls.what} (keys as below, with underscores); flags given win")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = field_kind(cls, f)
        if kind.is_sequence and dataclasses.is_dataclass(kind.item):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ", ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        help_text = f"{f.metadata['help']} (default: {shown if shown not in ('', None, {}) else 'none'})"
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text.replace("%", "%%")}
        if kind.base is bool:
            group.add_argument(flag_of(f), action=argparse.BooleanOptionalAction, **kw)
            continue
        if "choices" in f.metadata:
            kw["choices"] = list(f.metadata["choices"])
        if kind.is_sequence or kind.base is dict:
            kw["nargs"] = "*"
            kw["metavar"] = "KEY=VALUE" if kind.base is dict else (None if "choices" in kw else "VALUE")
        else:
            kw["metavar"] = None if "choices" in kw else f.name.upper()
        group.add_argument(flag_of(f), **kw)


def from_args(cls: type, namespace: argparse.Namespace, *, base: Options | None = None):
    """The validated options a parsed command line asks for: ``--options FILE`` (else ``base``, else the
    defaults), then every flag given."""
    path = getattr(namespace, "options_file", None)
    start = cls.load(path) if path else (base or cls())
    given = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls) if hasattr(namespace, f.name)}
    return cls.from_dict({**start.to_dict(), **given}).validate()
