"""Builds the PII benchmark's public data folder from the three public repositories it comes from.

The files are third-party data, so they are not committed; this script re-creates them from
checkouts (or bare git directories) of:

- microsoft/presidio-research (MIT): ``data/synth_dataset_v2.json`` whole, and the person templates
  of ``presidio_evaluator/data_generator/raw_data/templates.txt``;
- sigpwned/popular-names-by-country-dataset (CC0): given names and surnames from 100+ countries,
  kept only where no Faker person provider holds the name (``held_out_names.tsv``);
- hiyouga/LLaMA-Factory (Apache-2.0 repository; the texts are C4 web pages, ODC-BY, and Wikipedia
  articles, CC BY-SA): ``data/c4_demo.jsonl`` paragraphs and ``data/wiki_demo.txt`` passages
  (``prose.jsonl``).

    python benchmarks/pii_data.py --presidio-research DIR --names DIR --llama-factory DIR [--out shared/pii-benchmark]

benchmarks/data/README.md names each source, its licence and how each slice is cut.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import pkgutil
import random
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "shared" / "pii-benchmark"
PERSON_SLOTS = re.compile(r"\{\{(person|name|name_female|name_male|first_name|first_name_male|first_name_female|"
                          r"last_name)\}\}")
MIN_PARAGRAPH = 40
WIKI_PASSAGE = 600
NAME_PAIRS = 2000


def read_source(repo: Path, path: str) -> str:
    """A file's text from a checkout, or from the HEAD commit of a bare git directory."""
    if (repo / path).is_file():
        return (repo / path).read_text(encoding="utf-8-sig")
    shown = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"], capture_output=True, check=True)
    return shown.stdout.decode("utf-8-sig")


def faker_person_names() -> set[str]:
    """Every first name, last name, prefix and suffix that any Faker locale's person provider holds (lowercase)."""
    import faker.providers.person as person

    names = set()
    for module in pkgutil.iter_modules(person.__path__):
        provider = getattr(importlib.import_module(f"{person.__name__}.{module.name}"), "Provider", None)
        for attribute in dir(provider) if provider else ():
            if not any(k in attribute for k in ("first_name", "last_name", "prefix", "suffix")):
                continue
            values = getattr(provider, attribute)
            if isinstance(values, (list, tuple, set, frozenset, dict)):
                names.update(v.lower() for v in values if isinstance(v, str))
    return names


def _latin_name(name: str) -> bool:
    return bool(re.fullmatch(r"[^\W\d_]+(?:[ '\-][^\W\d_]+)*", name)) and all(
        "LATIN" in unicodedata.name(c, "") for c in name if c.isalpha())


def held_out_names(forenames_csv: str, surnames_csv: str, seed: int = 15) -> list[tuple[str, str, str]]:
    """(given, family, country) pairs of romanized names no Faker locale holds, given and family from one
    country where the list has both, otherwise a family name from another country."""
    known = faker_person_names()

    def usable(name: str) -> bool:
        return _latin_name(name) and len(name) > 1 and not any(part in known for part in re.split(r"[ '\-]", name.lower()))

    given, family = {}, {}
    for row in csv.DictReader(io.StringIO(forenames_csv)):
        if usable(row["Romanized Name"].strip()):
            given.setdefault(row["Country"], []).append(row["Romanized Name"].strip())
    for row in csv.DictReader(io.StringIO(surnames_csv)):
        if usable(row["Romanized Name"].strip()):
            family.setdefault(row["Country"], []).append(row["Romanized Name"].strip())
    rng = random.Random(seed)
    every_family = sorted({n for names in family.values() for n in names})
    pairs = []
    for country in sorted(given):
        for name in sorted(set(given[country])):
            surnames = sorted(set(family.get(country, []))) or every_family
            pairs.append((name, rng.choice(surnames), country))
    for country in sorted(family):
        for name in sorted(set(family[country])):
            if not any(p[1] == name for p in pairs):
                pairs.append((rng.choice(sorted(set(given.get(country, []))) or [p[0] for p in pairs]), name, country))
    rng.shuffle(pairs)
    return pairs[:NAME_PAIRS]


def prose_records(c4_jsonl: str, wiki_txt: str) -> list[dict]:
    """C4 paragraphs (one per line of each page) and Wikipedia passages (about WIKI_PASSAGE characters,
    cut at sentence ends), in file order."""
    records = []
    for page, line in enumerate(c4_jsonl.splitlines()):
        for number, paragraph in enumerate(json.loads(line)["text"].split("\n")):
            if len(paragraph.strip()) >= MIN_PARAGRAPH:
                records.append({"id": f"c4-{page}-{number}", "source": "c4", "text": paragraph.strip()})
    for article, text in enumerate(wiki_txt.splitlines()):
        passage, number = "", 0
        for sentence in re.split(r"(?<=[.!?])(?=\s|[A-Z])", text):
            passage += sentence
            if len(passage) >= WIKI_PASSAGE:
                records.append({"id": f"wiki-{article}-{number}", "source": "wikipedia", "text": passage.strip()})
                passage, number = "", number + 1
        if len(passage.strip()) >= MIN_PARAGRAPH:
            records.append({"id": f"wiki-{article}-{number}", "source": "wikipedia", "text": passage.strip()})
    return records


def build(presidio_research: Path, names: Path, llama_factory: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    synth = read_source(presidio_research, "data/synth_dataset_v2.json")
    json.loads(synth)
    (out / "synth_dataset_v2.json").write_text(synth, encoding="utf-8")
    (out / "presidio-research.LICENSE").write_text(read_source(presidio_research, "LICENSE"), encoding="utf-8")
    templates = read_source(presidio_research, "presidio_evaluator/data_generator/raw_data/templates.txt")
    person = [t.strip() for t in templates.splitlines() if PERSON_SLOTS.search(t)]
    (out / "person_templates.txt").write_text("".join(t + "\n" for t in person), encoding="utf-8")

    pairs = held_out_names(read_source(names, "common-forenames-by-country.csv"),
                           read_source(names, "common-surnames-by-country.csv"))
    (out / "held_out_names.tsv").write_text("given\tfamily\tcountry\n" + "".join("\t".join(p) + "\n" for p in pairs),
                                            encoding="utf-8")
    (out / "popular-names-by-country.LICENSE").write_text(read_source(names, "LICENSE"), encoding="utf-8")

    prose = prose_records(read_source(llama_factory, "data/c4_demo.jsonl"),
                          read_source(llama_factory, "data/wiki_demo.txt"))
    (out / "prose.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in prose),
                                     encoding="utf-8")
    (out / "LLaMA-Factory.LICENSE").write_text(read_source(llama_factory, "LICENSE"), encoding="utf-8")
    return {"synth": len(json.loads(synth)), "person_templates": len(person), "names": len(pairs),
            "countries": len({p[2] for p in pairs}), "prose": len(prose)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presidio-research", type=Path, required=True)
    parser.add_argument("--names", type=Path, required=True, help="popular-names-by-country-dataset")
    parser.add_argument("--llama-factory", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    print(json.dumps(build(args.presidio_research, args.names, args.llama_factory, args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
