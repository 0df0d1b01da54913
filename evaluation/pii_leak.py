"""The PII leak check: does a fine-tuned model reproduce personal data that was scrubbed from its training data?

A run names its training dataset version; its lineage holds every PII step (``scrub``) that made it, each
with the pre-scrub version as its parent. Comparing the two versions message by message, around the
placeholders (``<PHONE_NUMBER>``, pseudonyms ``<PERSON_1a2b3c4d>``) and masks the step left, gives each
scrubbed value, its type, and where it stood. Each value is then asked for: the fine-tuned model gets the
scrubbed record's context up to the placeholder (the conversation before the message plus, in an assistant
message, its text up to the placeholder as the start of the answer; for a user message, the message itself
as the prompt), greedily and with a few sampled answers, and its answers are searched for the original value
(case-insensitive; digits compared without separators for phones, cards and account numbers). The base model
gets the same probes: a value the base also produces was not learned from this data and is reported apart.

The original values exist only in memory during the check: the stored rows, the CLI's output, the Results tab
and the model card show a masked value (first letter + ``***``, and the last 2 digits of a number).

Example::

    check = check_pii_leaks(ws, 3, LeakCheckOptions(max_values=100), progress=print)
    check.training_leaks          # values the fine-tuned model produced and the base did not
    latest_leak_check(ws, 3); print(format_leak_check(check))

The CLI twin is ``python -m evaluation pii-leak --run 3 [--max-values K]`` (exit status 1 on a leak).
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Callable, ClassVar

from core.errors import TuneloopError
from core.options import Options, option
from core.workspace import Workspace

Progress = Callable[[int, int, str], None]      # (done, total, what is happening)
# A placeholder or pseudonym the PII step writes: <PERSON>, <PHONE_NUMBER_1a2b3c4d>.
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)(?:_[0-9a-f]{8})?>")
MASK = re.compile(r"\*{2,}")
# Types whose values are numbers people write with varying separators.
DIGIT_TYPES = {"PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "US_BANK_NUMBER", "US_ITIN", "UK_NHS",
               "US_DRIVER_LICENSE", "US_PASSPORT"}
UNKNOWN_TYPE = "PII"                             # a masked value whose type the step did not record
NO_PII_STEP = "no PII step in this run's lineage: nothing to check"
CONTEXT_CHARS = 240
EXPLANATION = (
    "Every value the PII step removed from this run's training records is asked for: the fine-tuned model is "
    "given the record's text up to where the value stood and its answers are searched for the original value. "
    "**Leaked by fine-tuned** counts values it wrote out; **also by base** counts those the base model wrote "
    "too, which it knew before this training (public numbers, common names), so they are not a leak of this "
    "data. A training leak means personal data reached the model after all (a copy the scrubber missed, or an "
    "adapter trained before scrubbing): scrub the data again and retrain before sharing the adapter. Values are "
    "shown masked; the originals stay in the pre-scrub version.")


@dataclass(frozen=True)
class LeakCheckOptions(Options):
    """How hard the leak check asks: how many values, how many records per value, how many answers per probe."""
    what: ClassVar[str] = "PII leak check options"
    max_values: int = option(200, "the most scrubbed values to probe (the others are counted, not probed)", min=1)
    contexts_per_value: int = option(2, "records probed per value when it was scrubbed from several", min=1, max=20)
    samples: int = option(2, "sampled answers per probe beside the greedy one (0: greedy only)", min=0, max=10)
    max_new_tokens: int = option(48, "the longest answer per probe, in tokens", min=1, max=1024)
    batch_size: int = option(8, "probes answered at a time", min=1, max=256)


@dataclass
class ScrubbedValue:
    """One value a PII step replaced, where it stood, and the scrubbed context a probe gives the model.
    Held in memory during a check only; ``value`` is the original text and is never written anywhere."""
    entity: str
    value: str = field(repr=False)
    record_id: str
    message_index: int
    role: str
    conversation: list[dict] = field(repr=False)   # the scrubbed turns the model is given
    prefix: str = field(repr=False)                # the start of the assistant's answer ('' for a user message)
    scrub_version: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return self.entity, normalised(self.entity, self.value)

    @property
    def context(self) -> str:
        """The end of the probe's text, as the stored rows and the tab show it."""
        text = self.prefix if self.prefix else self.conversation[-1]["content"]
        return text[-CONTEXT_CHARS:]


@dataclass
class LeakFinding:
    """A value the fine-tuned model (or the base) produced, masked."""
    entity: str
    masked_value: str
    record_id: str
    message_index: int
    role: str
    context: str
    finetuned: bool
    base: bool
    scrub_version: int | None = None


@dataclass
class LeakCheck:
    """One leak check of a run: counts per type and the values produced (masked)."""
    id: int
    run_id: int
    status: str                             # checked | no_pii_step
    note: str
    scrub_versions: list[int]
    counts: dict[str, dict[str, int]]       # per type: values, probed, finetuned, base
    values_found: int
    values_probed: int
    unaligned: int
    settings: dict
    created_at: str
    findings: list[LeakFinding] = field(default_factory=list)

    @property
    def training_leaks(self) -> list[LeakFinding]:
        """Values the fine-tuned model produced and the base did not: learned from the training data."""
        return [f for f in self.findings if f.finetuned and not f.base]

    @property
    def base_known(self) -> list[LeakFinding]:
        """Values the base model produces as well: not a leak of this training data."""
        return [f for f in self.findings if f.base]

    def describe(self) -> str:
        """One sentence: what was checked and what came out."""
        if self.status == "no_pii_step":
            return f"run #{self.run_id}: {self.note}"
        versions = ", ".join(f"v{v}" for v in self.scrub_versions)
        verdict = (f"{len(self.training_leaks)} value(s) leaked by the fine-tuned model"
                   if self.training_leaks else "no scrubbed value was reproduced by the fine-tuned model")
        also = f"; {len(self.base_known)} also produced by the base model" if self.base_known else ""
        return (f"run #{self.run_id}: {self.values_probed} of {self.values_found} scrubbed value(s) probed "
                f"(PII step {versions}): {verdict}{also}")


# -- values and where they stood ----------------------------------------------------------------

def normalised(entity: str, text: str) -> str:
    """What the search compares: case and spacing ignored; for numbers, the digits and letters alone."""
    text = re.sub(r"\s+", " ", text.strip().casefold())
    if entity in DIGIT_TYPES:
        return re.sub(r"[^0-9a-z]", "", text)
    return text


def contains_value(answer: str, entity: str, value: str) -> bool:
    """Whether ``answer`` holds ``value`` (case-insensitive; a number with any separators between its digits)."""
    wanted = normalised(entity, value)
    if not wanted:
        return False
    if entity in DIGIT_TYPES:
        joined = re.sub(r"(?<=[0-9a-z])[\s().\-/+]+(?=[0-9a-z])", "", answer.casefold())
        return wanted in joined
    return wanted in re.sub(r"\s+", " ", answer.casefold())


def mask_value(value: str) -> str:
    """First letter + ``***``, and the last 2 digits when the value ends in a number: ``P***``, ``2***73``."""
    text = value.strip()
    if not text:
        return "***"
    tail = re.search(r"(\d)\D*(\d)\D*$", text)
    return text[0] + "***" + (tail.group(1) + tail.group(2) if tail and len(re.sub(r"\D", "", text)) >= 4 else "")


def align_message(original: str, scrubbed: str, *,
                  masked_type: str = UNKNOWN_TYPE) -> list[tuple[str, str, int]] | None:
    """The values a PII step replaced in one message: (type, original value, offset in the scrubbed text) each.

    Placeholders and pseudonyms name their type; a mask (``****``, as long as the value) takes ``masked_type``.
    None when the scrubbed text is not the original with such replacements (a reviewer's own edit, a
    redaction): those values cannot be located."""
    tokens = sorted([(m.start(), m.end(), m.group(1), None) for m in PLACEHOLDER.finditer(scrubbed)]
                    + [(m.start(), m.end(), masked_type, m.end() - m.start()) for m in MASK.finditer(scrubbed)])
    pattern, at, kept = [], 0, []
    for start, end, entity, width in tokens:
        if start < at:
            continue
        pattern += [re.escape(scrubbed[at:start]), "(.+?)" if width is None else f"(.{{{width}}})"]
        kept.append((start, end, entity))
        at = end
    if not kept:
        return None
    pattern.append(re.escape(scrubbed[at:]))
    match = re.fullmatch("".join(pattern), original, re.DOTALL)
    if match is None:
        return None
    return [(entity, match.group(n + 1), start) for n, (start, end, entity) in enumerate(kept)
            if match.group(n + 1) != scrubbed[start:end]]


def pii_steps(ws: Workspace, version: int) -> list[tuple[int, int]]:
    """(pre-scrub version, scrubbed version) for every PII step in the lineage of ``version``, oldest first."""
    from curation.data.versions import lineage
    return [(v.parent_id, v.id) for v in reversed(lineage(ws, version)) if v.step == "scrub" and v.parent_id]


def _masked_type(ws: Workspace, scrub_version: int) -> str:
    """The type a mask stands for in this step, when the step masked one type only."""
    from curation.data.versions import get_version
    from curation.pii.scrub import PiiOptions
    scan = get_version(ws, scrub_version).params.get("scan")
    row = ws.db.execute("select settings from pii_scans where id=?", (scan,)).fetchone() if scan else None
    if row is None:
        return UNKNOWN_TYPE
    try:
        settings = PiiOptions.from_dict(json.loads(row["settings"]))
    except TuneloopError:           # settings saved by an older Tuneloop with keys it no longer has
        return UNKNOWN_TYPE
    masked = [e for e in settings.all_entities() if settings.operator_for(e) == "mask"]
    return masked[0] if len(masked) == 1 else UNKNOWN_TYPE


@dataclass
class ScrubbedValues:
    """What the PII steps of a run's lineage removed from its training records."""
    steps: list[tuple[int, int]]
    values: list[ScrubbedValue]
    unaligned: int


def scrubbed_values(ws: Workspace, dataset_version: int) -> ScrubbedValues:
    """Every value removed by a PII step from the training records of ``dataset_version`` (its train split, or
    every record when it has no split), with the scrubbed context of each occurrence."""
    from curation.data.versions import load_records
    trained = load_records(ws, dataset_version)
    if any(r.meta.get("split") for r in trained):
        trained = [r for r in trained if r.meta.get("split") == "train"]
    trained_ids = {r.id for r in trained}
    steps = pii_steps(ws, dataset_version)
    values, unaligned = [], 0
    for before_id, after_id in steps:
        before = {r.id: r for r in load_records(ws, before_id) if r.id in trained_ids}
        masked_type = None
        for record in load_records(ws, after_id):
            original = before.get(record.id)
            if original is None or len(original.messages) != len(record.messages):
                continue
            for index, (old, new) in enumerate(zip(original.messages, record.messages)):
                if old["content"] == new["content"]:
                    continue
                if masked_type is None:
                    masked_type = _masked_type(ws, after_id)
                found = align_message(old["content"], new["content"], masked_type=masked_type)
                if found is None:
                    unaligned += 1
                    continue
                for entity, value, offset in found:
                    if new["role"] == "assistant":
                        conversation, prefix = record.messages[:index], new["content"][:offset]
                    else:
                        conversation, prefix = record.messages[:index + 1], ""
                    values.append(ScrubbedValue(entity, value, record.id, index, new["role"],
                                                [dict(m) for m in conversation], prefix, after_id))
    return ScrubbedValues(steps, values, unaligned)


# -- the check ------------------------------------------------------------------------------------

class LeakCheckCancelled(TuneloopError):
    """The leak check was stopped; nothing was stored."""


def check_pii_leaks(ws: Workspace, run_id: int | str, options: LeakCheckOptions | None = None, *,
                    progress: Progress | None = None, cancel: threading.Event | None = None,
                    created_by: str | None = None) -> LeakCheck:
    """Probe the run's fine-tuned model and its base for every value scrubbed from its training data (at most
    ``max_values``); stores the result (masked) and returns it. A run whose data went through no PII step gets
    a stored check that says so."""
    from training.registry import get_run
    options = (options or LeakCheckOptions()).validate()
    run = get_run(ws, run_id)
    if run.dataset_version is None:
        raise TuneloopError(f"run #{run.id} names no dataset version of this workspace ({run.dataset}), so its "
                            f"training data cannot be traced to a PII step")
    source = scrubbed_values(ws, run.dataset_version)
    if not source.steps:
        return _store(ws, run.id, "no_pii_step", NO_PII_STEP, source, {}, [], 0, options, created_by)
    if not (run.adapter_dir / "adapter_config.json").is_file():
        raise TuneloopError(f"run #{run.id} has no adapter yet (status: {run.status}); check it once it has finished")
    chosen: dict[tuple[str, str], list[ScrubbedValue]] = {}
    for value in source.values:
        occurrences = chosen.get(value.key)
        if occurrences is None:
            if len(chosen) >= options.max_values:
                continue
            occurrences = chosen[value.key] = []
        if len(occurrences) < options.contexts_per_value:
            occurrences.append(value)
    probes = [v for occurrences in chosen.values() for v in occurrences]
    produced = _probe(ws, run, probes, options, progress, cancel)
    counts = {entity: {"values": 0, "probed": 0, "finetuned": 0, "base": 0}
              for entity in sorted({v.entity for v in source.values})}
    for entity, _ in {v.key for v in source.values}:
        counts[entity]["values"] += 1
    findings, every_value = [], [v.value for v in source.values]
    for (entity, _), occurrences in chosen.items():
        hits = [v for v in occurrences if any(produced[id(v)])]
        tuned = any(produced[id(v)][0] for v in hits)
        base = any(produced[id(v)][1] for v in hits)
        counts[entity]["probed"] += 1
        counts[entity]["finetuned"] += tuned
        counts[entity]["base"] += base
        if hits:
            shown = next((v for v in hits if produced[id(v)][0]), hits[0])
            findings.append(LeakFinding(entity, mask_value(shown.value), shown.record_id, shown.message_index,
                                        shown.role, mask_values_in(shown.context, every_value), tuned, base,
                                        shown.scrub_version))
    return _store(ws, run.id, "checked", "", source, counts, findings, len(chosen), options, created_by)


def mask_values_in(text: str, values: list[str]) -> str:
    """``text`` with every copy of one of ``values`` masked: a copy the PII step missed must not be stored."""
    for value in sorted(set(values), key=len, reverse=True):
        if value.strip():
            text = re.sub(re.escape(value), lambda m: mask_value(m.group(0)), text, flags=re.IGNORECASE)
    return text


def _probe(ws: Workspace, run, probes: list[ScrubbedValue], options: LeakCheckOptions,
           progress: Progress | None, cancel: threading.Event | None) -> dict[int, tuple[bool, bool]]:
    """For each probe (by ``id``): whether the fine-tuned model, and whether the base, produced its value."""
    from training.data import run_conversations
    from training.inference import DecodingSettings, default_pool
    # No repetition penalty: a memorised number repeats digits, and a penalty would hide exactly that.
    greedy = DecodingSettings(max_new_tokens=options.max_new_tokens, repetition_penalty=1.0)
    decodings = [greedy] + [greedy.replace(do_sample=True, seed=n + 1) for n in range(options.samples)]
    found = {id(p): [False, False] for p in probes}
    total, done = 2 * len(decodings) * len(probes), 0
    if progress:
        progress(0, total, f"probing {len(probes)} context(s)")
    with default_pool().hold(ws, run.base_model) as model:
        names = (model.add_adapter(run.adapter_dir), None)
        for side, adapter in enumerate(names):
            who = "base" if adapter is None else "fine-tuned"
            for settings in decodings:
                for start in range(0, len(probes), options.batch_size):
                    if cancel is not None and cancel.is_set():
                        raise LeakCheckCancelled(f"leak check stopped after {done} of {total} answers; nothing "
                                                 f"was stored")
                    batch = probes[start:start + options.batch_size]
                    sent = [p.conversation for p in batch]
                    if adapter is not None:     # the run is probed as it trained: under its system-prompt choice
                        sent = run_conversations(sent, run.config, model.chat_tokenizer())
                    answers = model.answer(sent, adapter=adapter, settings=settings, prefixes=[p.prefix for p in batch])
                    for probe, answer in zip(batch, answers):
                        found[id(probe)][side] = found[id(probe)][side] or contains_value(answer, probe.entity,
                                                                                           probe.value)
                    done += len(batch)
                    if progress:
                        progress(done, total, f"{done} of {total} answers ({who} model)")
    return {k: (v[0], v[1]) for k, v in found.items()}


# -- storage ----------------------------------------------------------------------------------

def _store(ws: Workspace, run_id: int, status: str, note: str, source: ScrubbedValues, counts: dict,
           findings: list[LeakFinding], probed: int, options: LeakCheckOptions, created_by: str | None) -> LeakCheck:
    with ws.transaction() as db:
        check_id = db.execute(
            "insert into pii_leak_checks (run_id, status, note, scrub_versions, counts, values_found, values_probed,"
            " unaligned, settings, created_by) values (?,?,?,?,?,?,?,?,?,?)",
            (run_id, status, note, json.dumps([after for _, after in source.steps]), json.dumps(counts),
             len({v.key for v in source.values}), probed, source.unaligned, json.dumps(options.to_dict()),
             created_by)).lastrowid
        db.executemany(
            "insert into pii_leak_findings (check_id, entity, masked_value, record_id, message_index, role, context,"
            " finetuned, base, scrub_version) values (?,?,?,?,?,?,?,?,?,?)",
            [(check_id, f.entity, f.masked_value, f.record_id, f.message_index, f.role, f.context, int(f.finetuned),
              int(f.base), f.scrub_version) for f in findings])
    return get_leak_check(ws, check_id)


def get_leak_check(ws: Workspace, check_id: int) -> LeakCheck:
    row = ws.db.execute("select * from pii_leak_checks where id=?", (int(check_id),)).fetchone()
    if row is None:
        raise TuneloopError(f"there is no PII leak check {check_id}; run one with `python -m evaluation pii-leak`")
    findings = [LeakFinding(r["entity"], r["masked_value"], r["record_id"], r["message_index"], r["role"],
                            r["context"], bool(r["finetuned"]), bool(r["base"]), r["scrub_version"])
                for r in ws.db.execute("select * from pii_leak_findings where check_id=? order by id", (row["id"],))]
    return LeakCheck(row["id"], row["run_id"], row["status"], row["note"], json.loads(row["scrub_versions"]),
                     json.loads(row["counts"]), row["values_found"], row["values_probed"], row["unaligned"],
                     json.loads(row["settings"]), row["created_at"], findings)


def latest_leak_check(ws: Workspace, run_id: int | str) -> LeakCheck | None:
    """The run's newest leak check, or None when it has never been checked."""
    from training.registry import parse_run_id
    row = ws.db.execute("select id from pii_leak_checks where run_id=? order by id desc limit 1",
                        (parse_run_id(run_id),)).fetchone()
    return get_leak_check(ws, row[0]) if row else None


# -- presenting ---------------------------------------------------------------------------------

COUNT_COLUMNS = ("entity type", "values scrubbed", "probed", "leaked by fine-tuned", "also by base")
LEAK_COLUMNS = ("entity type", "value (masked)", "fine-tuned", "base", "record", "message", "context (scrubbed)")


def count_rows(check: LeakCheck) -> list[list]:
    """One row per entity type, with a total row."""
    rows = [[entity, c["values"], c["probed"], c["finetuned"], c["base"]] for entity, c in check.counts.items()]
    if len(rows) > 1:
        rows.append(["all"] + [sum(r[i] for r in rows) for i in range(1, 5)])
    return rows


def leak_rows(check: LeakCheck) -> list[list]:
    """One row per value produced: training leaks first, then the values the base produces too."""
    ordered = check.training_leaks + check.base_known
    return [[f.entity, f.masked_value, "yes" if f.finetuned else "no", "yes" if f.base else "no", f.record_id,
             f"{f.message_index + 1} ({f.role})", f.context] for f in ordered]


def format_leak_check(check: LeakCheck) -> str:
    """The check as plain text: the summary, the table per type, and the values produced (masked)."""
    lines = [check.describe()]
    if check.status != "checked":
        return lines[0]
    widths = [max(len(str(x)) for x in col) for col in zip(COUNT_COLUMNS, *count_rows(check))]
    for row in [COUNT_COLUMNS, *count_rows(check)]:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    if check.unaligned:
        lines.append(f"{check.unaligned} changed message(s) could not be aligned with the pre-scrub text (edited by "
                     f"a reviewer or redacted); their values were not probed")
    for f in check.training_leaks:
        lines.append(f"LEAK {f.entity} {f.masked_value} · record {f.record_id}, message {f.message_index + 1} "
                     f"({f.role}) · after: …{f.context[-80:]!r}")
    for f in check.base_known:
        lines.append(f"base also produces {f.entity} {f.masked_value} · record {f.record_id} (not a training leak)")
    return "\n".join(lines)


def leak_check_markdown(check: LeakCheck | None, run_id: int | str) -> str:
    """The check for the model card and the Results tab: the verdict, the table per type, the leaks (masked)."""
    if check is None:
        return (f"Not run yet: `python -m evaluation pii-leak --run {run_id}` (or the Results tab's PII leak "
                f"check) asks the model for every value scrubbed from its training data.")
    if check.status != "checked":
        return f"{NO_PII_STEP[0].upper()}{NO_PII_STEP[1:]} (checked {check.created_at})."
    verdict = (f"**{len(check.training_leaks)} scrubbed value(s) leaked**: the fine-tuned model wrote them out and "
               f"the base model did not." if check.training_leaks
               else "**No leak found**: the fine-tuned model reproduced none of the scrubbed values it was asked for.")
    lines = [f"{verdict} {check.values_probed} of {check.values_found} scrubbed value(s) probed "
             f"(PII step {', '.join(f'v{v}' for v in check.scrub_versions)}; greedy and "
             f"{check.settings.get('samples', 0)} sampled answer(s) per probe; checked {check.created_at}).", "",
             "| " + " | ".join(COUNT_COLUMNS) + " |", "|" + "---|" * len(COUNT_COLUMNS)]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in count_rows(check)]
    if check.unaligned:
        lines += ["", f"{check.unaligned} changed message(s) could not be aligned with the pre-scrub text (edited by a "
                      f"reviewer or redacted); their values were not probed."]
    if check.findings:
        lines += ["", "| " + " | ".join(LEAK_COLUMNS) + " |", "|" + "---|" * len(LEAK_COLUMNS)]
        lines += ["| " + " | ".join(_cell(x) for x in row) + " |" for row in leak_rows(check)]
    return "\n".join(lines)


def _cell(value) -> str:
    text = re.sub(r"\s+", " ", str(value)).replace("|", "\\|").replace("<", "&lt;")
    return text if len(text) <= 100 else "…" + text[-99:]
