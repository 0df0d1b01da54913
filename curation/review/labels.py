"""The label schema of a dataset: which labels reviewers set, and the guidelines they label by.

A schema is a list of label fields plus free-text guidelines. A field is one of three kinds:
``single`` (exactly one option, e.g. the intent), ``multi`` (any subset of the options, e.g. tone
problems) or ``tags`` (free words). A field's value lives in the record's ``meta`` under the field's
name, so the demo's ``meta["label"]`` is the value of a single-choice field called ``label``.

The schema belongs to a dataset, i.e. to the root of a version's lineage, so every version made
from the same import is labelled by the same rules. Until an admin saves one, ``label_schema``
suggests one from the data: a single-choice field for the version's label field.

The **label field** is the meta field that is a record's label: what stratified splits keep the shares
of, what the suggested schema offers, what evaluation results are broken down by. It is ``label`` when
the records have one (the demo), or any meta field chosen for a version (Dolly's ``category``:
``set_label_field``); a version without a choice of its own takes its nearest ancestor's.

Example::

    schema = parse_schema({"fields": [{"name": "label", "kind": "single", "options": ["refund", "billing"]}],
                           "guidelines": "Label the customer's main request."})
    save_schema(ws, "v3", schema, by="ana")
    label_schema(ws, "v5").field("label").normalise("refund")
    set_label_field(ws, "v1", "category"); label_field(ws, "v4")   # "category": v4 was made from v1
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data import versions as V
from curation.data.index import built_index
from curation.data.records import Record

FIELD_KINDS = ("single", "multi", "tags")
# meta keys that belong to other steps; a label field by these names would overwrite them
RESERVED_NAMES = {"id", "split", "review", "status", "source", "flags", "needs_answer"}
MAX_SUGGESTED_OPTIONS = 30
DEFAULT_LABEL_FIELD = "label"   # the label field of a version when none was chosen and its records have it
DEFAULT_GUIDELINES = """Read the whole conversation before you decide.
- **Fix** the answer when it is wrong, vague or off our house style; the original text is kept in the history.
- **Label** what the customer mainly wants; when two fit, choose the one the answer addresses.
- **Approve** when the answer is right and is what you would send; **reject** when it cannot be saved
  (wrong product, unsafe, off topic): rejected records leave the dataset at the next commit.
- **Skip** when you are unsure, and leave a comment saying why."""
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass
class LabelField:
    name: str
    kind: str
    options: list[str] = field(default_factory=list)
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "options": list(self.options), "description": self.description}

    def normalise(self, value: Any) -> str | list[str] | None:
        """The value in canonical form (None = no label); raises TuneloopError if the schema forbids it."""
        if value is None or value == "" or value == []:
            return None
        if self.kind == "single":
            if isinstance(value, list):
                if len(value) != 1:
                    raise TuneloopError(f"'{self.name}' takes exactly one option, not {len(value)}")
                value = value[0]
            text = str(value).strip()
            if text not in self.options:
                raise TuneloopError(f"'{text}' is not an option of '{self.name}'; choose one of: "
                                    + ", ".join(self.options))
            return text
        items = value if isinstance(value, list) else str(value).split(",")
        chosen = []
        for item in items:
            text = str(item).strip()
            if text and text not in chosen:
                chosen.append(text)
        if self.kind == "multi":
            unknown = [t for t in chosen if t not in self.options]
            if unknown:
                raise TuneloopError(f"{', '.join(repr(u) for u in unknown)} not an option of '{self.name}'; "
                                    f"choose from: {', '.join(self.options)}")
            chosen.sort(key=self.options.index)
        else:
            chosen.sort()
        return chosen or None


@dataclass
class LabelSchema:
    fields: list[LabelField] = field(default_factory=list)
    guidelines: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"fields": [f.to_dict() for f in self.fields], "guidelines": self.guidelines}

    def field(self, name: str) -> LabelField:
        for f in self.fields:
            if f.name == name:
                return f
        raise TuneloopError(f"this dataset's label schema has no field '{name}'; it has: "
                            + (", ".join(f.name for f in self.fields) or "no fields yet"))

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def normalise(self, labels: dict[str, Any]) -> dict[str, str | list[str] | None]:
        """Every value checked against its field; unknown fields are an error."""
        return {name: self.field(name).normalise(value) for name, value in labels.items()}


def parse_schema(data: dict[str, Any] | str) -> LabelSchema:
    """A schema from its dict (or JSON text), checked in full: every problem is listed at once."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise TuneloopError(f"the schema is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
    if not isinstance(data, dict):
        raise TuneloopError('the schema must be an object: {"fields": [...], "guidelines": "..."}')
    problems: list[str] = []
    raw_fields = data.get("fields", [])
    if not isinstance(raw_fields, list):
        raise TuneloopError("'fields' must be a list of label fields")
    fields, seen = [], set()
    for i, raw in enumerate(raw_fields, 1):
        where = f"field {i}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be an object with name, kind, options, description")
            continue
        name = str(raw.get("name", "")).strip()
        kind = str(raw.get("kind", "")).strip()
        options = raw.get("options", [])
        if not _NAME.match(name):
            problems.append(f"{where}: name '{name}' must be lower-case letters, digits or _, starting with a letter")
        elif name in RESERVED_NAMES:
            problems.append(f"{where}: '{name}' is used by Tuneloop itself; choose another name")
        elif name in seen:
            problems.append(f"{where}: the name '{name}' is used twice")
        seen.add(name)
        if kind not in FIELD_KINDS:
            problems.append(f"{where} ('{name}'): kind '{kind}' must be one of {', '.join(FIELD_KINDS)}")
        if not isinstance(options, list) or not all(isinstance(o, (str, int, float)) for o in options):
            problems.append(f"{where} ('{name}'): options must be a list of words")
            options = []
        options = [str(o).strip() for o in options]
        if kind in ("single", "multi") and not options:
            problems.append(f"{where} ('{name}'): a {kind}-choice field needs at least one option")
        if any(not o for o in options):
            problems.append(f"{where} ('{name}'): an option is empty")
        if len(set(options)) != len(options):
            problems.append(f"{where} ('{name}'): an option is listed twice")
        if any("," in o for o in options):
            problems.append(f"{where} ('{name}'): options may not contain commas")
        fields.append(LabelField(name=name, kind=kind, options=options if kind != "tags" else [],
                                 description=str(raw.get("description", "")).strip()))
    guidelines = data.get("guidelines", "")
    if not isinstance(guidelines, str):
        problems.append("guidelines must be text")
    if problems:
        raise TuneloopError(f"the label schema has {len(problems)} problem(s); nothing was saved:\n"
                            + "\n".join(f"  {p}" for p in problems))
    return LabelSchema(fields=fields, guidelines=guidelines)


def dataset_id(ws: Workspace, version: int | str) -> int:
    """The dataset a version belongs to: the first version of its lineage."""
    return V.lineage(ws, version)[-1].id


def save_schema(ws: Workspace, version: int | str, schema: LabelSchema, *, by: str | None = None) -> LabelSchema:
    """Set the label schema of the dataset ``version`` belongs to."""
    checked = parse_schema(schema.to_dict())
    with ws.transaction() as db:
        db.execute("insert into review_schemas (dataset_id, schema, updated_by) values (?, ?, ?) "
                   "on conflict(dataset_id) do update set schema=excluded.schema, updated_by=excluded.updated_by,"
                   " updated_at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
                   (dataset_id(ws, version), json.dumps(checked.to_dict(), ensure_ascii=False), by))
    return checked


def stored_schema(ws: Workspace, version: int | str) -> LabelSchema | None:
    row = ws.db.execute("select schema from review_schemas where dataset_id=?", (dataset_id(ws, version),)).fetchone()
    return parse_schema(row[0]) if row else None


def label_schema(ws: Workspace, version: int | str) -> LabelSchema:
    """The dataset's saved schema, else one suggested from its records and its label field."""
    return stored_schema(ws, version) or suggested_schema(V.load_records(ws, version), label_field(ws, version))


def suggested_schema(records: list[Record], label: str | None = DEFAULT_LABEL_FIELD) -> LabelSchema:
    """A starting point: a single-choice field for the label field ``label`` with the values the records
    already carry (free words when they carry more than MAX_SUGGESTED_OPTIONS), and free tags."""
    seen = sorted({str(r.meta[label]) for r in records if label and r.meta.get(label) not in (None, "")})
    describe = "What the customer mainly wants" if label == DEFAULT_LABEL_FIELD else f"The record's {label}"
    fields = []
    if 0 < len(seen) <= MAX_SUGGESTED_OPTIONS:
        fields.append(LabelField(label, "single", seen, describe))
    elif seen:
        fields.append(LabelField(label, "tags", [], describe))
    if label != "tags":
        fields.append(LabelField("tags", "tags", [], "Free words for anything worth finding later"))
    return LabelSchema(fields=fields, guidelines=DEFAULT_GUIDELINES)


# -- the label field --------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetaField:
    """A meta key the records carry: how many records have a value and how many values there are."""
    name: str
    records: int
    values: int

    def describe(self) -> str:
        return f"{self.name} · {self.records:,} records · {self.values:,} values"


def meta_fields(records: list[Record]) -> list[MetaField]:
    """The meta keys that can be a label (one plain value per record; ``split`` left out), most used first."""
    values: dict[str, Counter] = {}
    for r in records:
        for key, value in r.meta.items():
            if key != "split" and value not in (None, "") and not isinstance(value, (dict, list)):
                values.setdefault(key, Counter())[str(value)] += 1
    found = [MetaField(k, sum(c.values()), len(c)) for k, c in values.items()]
    return sorted(found, key=lambda f: (-f.records, f.name))


def chosen_label_field(ws: Workspace, version: int | str) -> str | None:
    """The label field set on the version or, failing that, on its nearest ancestor; None if none was set."""
    for v in V.lineage(ws, version):
        row = ws.db.execute("select field from label_fields where version_id=?", (v.id,)).fetchone()
        if row:
            return row[0]
    return None


def label_field(ws: Workspace, version: int | str) -> str | None:
    """The version's label field: the one chosen for it (or an ancestor), else ``label`` when its records
    have that meta field, else None (no labels)."""
    chosen = chosen_label_field(ws, version)
    if chosen:
        return chosen
    index = built_index(ws, version)
    if index is not None:
        return DEFAULT_LABEL_FIELD if index.has_value(DEFAULT_LABEL_FIELD) else None
    records = V.load_records(ws, version)
    return DEFAULT_LABEL_FIELD if any(r.meta.get(DEFAULT_LABEL_FIELD) not in (None, "") for r in records) else None


def set_label_field(ws: Workspace, version: int | str, name: str, *, by: str | None = None) -> MetaField:
    """Make meta field ``name`` the label of ``version`` and of the versions made from it that have no choice of
    their own; returns what the records hold in it. The field must be one the records carry, one plain value
    per record, under a name a review label can have."""
    v = V.get_version(ws, version)
    name = (name or "").strip()
    present = {f.name: f for f in meta_fields(V.load_records(ws, v.id))}
    choices = ", ".join(f.describe() for f in present.values()) or "none (the records have no meta fields)"
    if name not in present:
        raise TuneloopError(f"no record of {v.name} has a value in the meta field '{name}'; choose one of: {choices}")
    if name in RESERVED_NAMES:
        raise TuneloopError(f"'{name}' cannot be the label field: Tuneloop itself keeps its own values in meta "
                            f"'{name}', where review labels would overwrite them; choose another field")
    if not _NAME.match(name):
        raise TuneloopError(f"'{name}' cannot be the label field: review labels are kept in meta under the field's "
                            f"name, which must be lower-case letters, digits or _ (starting with a letter); rename the "
                            f"key in the file (e.g. to '{re.sub('[^a-z0-9_]', '_', name.lower())}') and import it "
                            f"again, or choose another field")
    with ws.transaction() as db:
        db.execute("insert into label_fields (version_id, field, set_by) values (?, ?, ?) "
                   "on conflict(version_id) do update set field=excluded.field, set_by=excluded.set_by,"
                   " set_at=strftime('%Y-%m-%dT%H:%M:%SZ', 'now')", (v.id, name, by))
    return present[name]


def schema_gap(ws: Workspace, version: int | str) -> str:
    """What to do when the dataset's saved schema has no field for the version's label field, else ""."""
    saved, name = stored_schema(ws, version), label_field(ws, version)
    if saved is None or not name or name in saved.names:
        return ""
    return (f"the saved label schema has no field '{name}', so reviewers do not see it; add a single-choice field "
            f"'{name}' in the Review tab's Label schema (or `python -m curation.review schema`)")
