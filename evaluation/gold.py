"""Gold pairs made from a split's reference answers, so the admin needs no gold file to test the raters.

A gold pair is a prompt of the version's split with its own reference answer (the record's assistant turn after
its last user turn) as the known better answer, against the reference answer of a *different* prompt of the same
split as the known worse one: it answers another question, so it is worse without a model judging it. A truncated
or garbled copy would give itself away by its shape (it ends mid-sentence, it reads broken); another record's
reference has the dataset's own voice, length and format, so only reading it against the question tells the two
apart, which is what a gold pair tests. The worse answer is the one of nearest length among the other prompts
(of another label where the split has labels), so length gives nothing away either. Prompts outside the evaluation
come first; a split too small for that lends the evaluation's own prompts. Each pair says what it was made from
(``GoldItem.made_from``), so the evaluation's settings record how many gold pairs came from references and its
description (``report``, the Results tab) says so.

Example::

    count = gold_needed(0.1, arm_pairs=120)                       # 12: one per ten arm pairs a rater may get
    gold = gold_from_references(ws, "v4", split="test", count=count, avoid={i.prompt_id for i in items})
"""
from __future__ import annotations

import math
import random
from typing import Iterable

from core.errors import TuneloopError
from core.workspace import Workspace
from evaluation.arena import GoldItem


def gold_needed(rate: float, arm_pairs: int) -> int:
    """How many gold pairs let a rater who gets every one of ``arm_pairs`` pairs meet ``rate`` (each rater gets
    each gold pair at most once)."""
    return max(1, math.ceil(rate * arm_pairs)) if rate > 0 else 0


def gold_from_references(ws: Workspace, version: int | str, *, split: str, count: int, avoid: Iterable[str] = (),
                         seed: int = 0) -> list[GoldItem]:
    """``count`` gold pairs from the references of ``version``'s ``split`` (see the module's docstring), prompts
    in ``avoid`` (the evaluation's) last; the draw is fixed by ``seed``."""
    from curation.data.versions import get_version, load_records
    from curation.review.labels import label_field
    from evaluation.generate import prompt_from_record, record_label
    field = label_field(ws, version)
    referenced = []
    for record in load_records(ws, version):
        prompt = prompt_from_record(record, field)
        if record.meta.get("split") != split or prompt is None or len(prompt.messages) >= len(record.messages):
            continue
        answer = record.messages[len(prompt.messages)]
        if answer["role"] == "assistant" and answer["content"].strip():
            referenced.append((prompt, answer["content"], record_label(record, field)))
    if len({" ".join(r[1].split()) for r in referenced}) < 2:
        raise TuneloopError(f"the '{split}' split of {version} has fewer than two different reference answers "
                            f"(assistant turns after the last user turn); gold pairs from references need them, or "
                            f"supply a gold file")
    avoid = set(avoid)
    made_from = f"the reference answers of {get_version(ws, version).name}'s {split} split"
    rng = random.Random(seed)
    order = rng.sample(referenced, len(referenced))
    order.sort(key=lambda r: r[0].prompt_id in avoid)
    out = []
    for prompt, better, label in order[:count]:
        others = [r for r in referenced if " ".join(r[1].split()) != " ".join(better.split())]
        unlike = [r for r in others if label is not None and r[2] is not None and r[2] != label] or others
        worse = min(unlike, key=lambda r: (abs(len(r[1]) - len(better)), r[0].prompt_id))[1]
        out.append(GoldItem(f"gold:{prompt.prompt_id}", prompt.messages, better=better, worse=worse, label=label,
                            split=prompt.split, made_from=made_from))
    return out


def reference_gold(ws: Workspace, source: str, version: int | None, items: list, arms: int,
                   pairs_per_prompt: int | None, gold_rate: float) -> list[GoldItem]:
    """The gold pairs the Prepare form and ``generate --gold-from-references`` add: as many as ``gold_rate`` needs
    for the evaluation's arm pairs, from the references of the split its prompts come from."""
    if source not in ("test", "train") or version is None:
        raise TuneloopError("gold pairs from reference answers need prompts from a dataset version's test or train "
                            "split (choose the version and that source), or a gold file")
    if gold_rate <= 0:
        raise TuneloopError("gold pairs from reference answers come at the gold rate; set it above 0 (0.1: one gold "
                            "pair per ten pairs a rater gets)")
    per_prompt = pairs_per_prompt or arms * (arms - 1) // 2
    return gold_from_references(ws, version, split=source, count=gold_needed(gold_rate, len(items) * per_prompt),
                                avoid={i.prompt_id for i in items})
