"""A generated chat dataset with planted near-duplicates and hard negatives, with the ground truth.

Records are support-style conversations (a user question, an assistant answer) built from Faker's
English word list, names, companies and numbers. Planted on top:

* near-duplicate groups: an original plus 1-3 copies, each with a few words replaced, inserted or
  deleted and with case and whitespace changes (what a re-sent ticket looks like);
* exact duplicates after normalisation (same text, other case, spacing and punctuation);
* hard negatives: records that share one long boilerplate paragraph (a signature, a policy notice,
  a template reply; some paragraphs used all over the set, some by only 2-12 records) but ask and
  answer different things; some even ask the same generic question. They must never merge.
  Some near-duplicate groups carry a shared paragraph too.

``planted_dataset(n, seed)`` returns the records and the truth; ``python -m benchmarks.planted_duplicates
OUT.jsonl [--n 30000]`` writes the records (truth in ``meta.truth_group`` / ``meta.truth_kind``).
"""
from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field

from curation.data.records import Record


@dataclass
class PlantedSet:
    records: list[Record]
    duplicate_groups: list[list[str]] = field(default_factory=list)   # ids that are duplicates of each other
    hard_negatives: set[str] = field(default_factory=set)             # ids that must never be removed

    def true_pairs(self) -> set[tuple[str, str]]:
        pairs = set()
        for group in self.duplicate_groups:
            ordered = sorted(group)
            pairs.update((a, b) for k, a in enumerate(ordered) for b in ordered[k + 1:])
        return pairs


class _Writer:
    def __init__(self, rng: random.Random):
        from faker import Faker
        from faker.providers.lorem.en_US import Provider as Lorem

        self.rng = rng
        self.words = list(Lorem.word_list)
        self.fake = Faker("en_US")
        self.fake.seed_instance(rng.randrange(2**31))

    def sentence(self, lo: int = 6, hi: int = 16) -> str:
        words = self.rng.choices(self.words, k=self.rng.randint(lo, hi))
        return " ".join(words).capitalize() + self.rng.choice([".", ".", ".", "?", "!"])

    def question(self) -> str:
        opener = self.rng.choice([
            f"Hi, this is {self.fake.first_name()}.", "Hello,", "", f"Order {self.rng.randint(10000, 99999)}:",
            f"I work at {self.fake.company()}.", "Quick question:"])
        body = " ".join(self.sentence() for _ in range(self.rng.randint(1, 3)))
        return f"{opener} {body}".strip()

    def answer(self) -> str:
        parts = [self.sentence(8, 20) for _ in range(self.rng.randint(1, 4))]
        if self.rng.random() < 0.3:
            parts.append(f"Your reference is {self.fake.bothify('??-####').upper()}.")
        return " ".join(parts)

    def boilerplate(self) -> str:
        return (f"Thank you for contacting {self.fake.company()} support. "
                + " ".join(self.sentence(10, 18) for _ in range(self.rng.randint(3, 5))))


def _edit_words(text: str, edits: int, rng: random.Random, vocabulary: list[str]) -> str:
    words = text.split()
    for _ in range(edits):
        if len(words) < 3:
            break
        kind = rng.choice(["replace", "insert", "delete"])
        at = rng.randrange(len(words))
        if kind == "replace":
            words[at] = rng.choice(vocabulary)
        elif kind == "insert":
            words.insert(at, rng.choice(vocabulary))
        else:
            del words[at]
    return " ".join(words)


def _restyle(text: str, rng: random.Random) -> str:
    """Case and whitespace changes that mean nothing to a reader."""
    choice = rng.random()
    if choice < 0.25:
        text = text.lower()
    elif choice < 0.35:
        text = text.upper()
    if rng.random() < 0.5:
        text = text.replace(" ", "  ", rng.randint(1, 3))
    if rng.random() < 0.3:
        text = "  " + text + " \n"
    return text


def _messages(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def planted_dataset(n: int = 30_000, seed: int = 0, *, near_share: float = 0.2, exact_share: float = 0.03,
                    hard_share: float = 0.1) -> PlantedSet:
    """About ``n`` records: ``near_share`` of them in near-duplicate groups, ``hard_share`` hard negatives."""
    rng = random.Random(seed)
    writer = _Writer(rng)
    records: list[Record] = []
    out = PlantedSet(records=records)

    def add(messages, kind, group=None) -> str:
        rid = f"r{len(records):07d}"
        meta = {"truth_kind": kind}
        if group is not None:
            meta["truth_group"] = group
        records.append(Record(id=rid, messages=messages, meta=meta))
        return rid

    # Template paragraphs: a few shared by many records (a signature), and private ones shared by 2-12.
    pool = [writer.boilerplate() for _ in range(max(4, n // 2000))]

    def with_boilerplate(answer: str, paragraph: str) -> str:
        # The boilerplate opens or closes the answer, as a greeting or a signature would.
        return f"{paragraph} {answer}" if rng.random() < 0.5 else f"{answer} {paragraph}"

    group_no = 0
    while len(records) < n * near_share:
        question, answer = writer.question(), writer.answer()
        if rng.random() < 0.15:
            answer = with_boilerplate(answer, rng.choice(pool))
        ids = [add(_messages(question, answer), "near", group_no)]
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            edits = rng.randint(1, 3)
            in_question = rng.randint(0, edits)
            q = _restyle(_edit_words(question, in_question, rng, writer.words), rng)
            a = _restyle(_edit_words(answer, edits - in_question, rng, writer.words), rng)
            ids.append(add(_messages(q, a), "near", group_no))
        out.duplicate_groups.append(ids)
        group_no += 1
    while len(records) < n * (near_share + exact_share):
        question, answer = writer.question(), writer.answer()
        copy_q = _restyle(question, rng).replace(".", "", 1).replace("?", " ?", 1)
        ids = [add(_messages(question, answer), "exact", group_no),
               add(_messages(copy_q, _restyle(answer, rng)), "exact", group_no)]
        out.duplicate_groups.append(ids)
        group_no += 1
    while len(records) < n * (near_share + exact_share + hard_share):
        shared = rng.random() < 0.5
        paragraph = rng.choice(pool) if shared else writer.boilerplate()
        generic = writer.question() if rng.random() < 0.3 else None
        for _ in range(rng.randint(1, 4) if shared else rng.randint(2, 12)):
            # Some ask the same generic question and differ only in the specific part of the answer.
            question = generic or writer.question()
            answer = with_boilerplate(writer.answer(), paragraph)
            out.hard_negatives.add(add(_messages(question, answer), "hard_negative"))
    while len(records) < n:
        add(_messages(writer.question(), writer.answer()), "unique")
    order = list(range(len(records)))
    rng.shuffle(order)
    records[:] = [records[i] for i in order]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    planted = planted_dataset(args.n, args.seed)
    with open(args.output, "w", encoding="utf-8") as fh:
        for r in planted.records:
            fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    print(f"wrote {len(planted.records)} records, {len(planted.duplicate_groups)} duplicate groups, "
          f"{len(planted.hard_negatives)} hard negatives to {args.output}")


if __name__ == "__main__":
    main()
