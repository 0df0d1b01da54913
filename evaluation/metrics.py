"""Automatic metrics: how close a model's answers are to the reference answers, and how likely it
finds them.

- ROUGE-L (rouge-score, ``training.quality.rouge_l``, the one training reports too): longest common
  subsequence F1 of words, with stemming; 0..1.
- BLEU (sacrebleu): corpus BLEU of the answers against one reference each; 0..100.
- Exact match: for classification and extraction records (``meta["task"]`` is ``classification`` or
  ``extraction``), whether the answer equals the reference after normalising case, spaces and
  surrounding punctuation; 0..1.
- Perplexity: exp of the mean negative log-likelihood of the reference answers' tokens (assistant
  turns only, the same tokens training learns from) given their conversation; lower is better.

Example::

    rouge_l(["Open Settings."], ["Open the Settings app."])          # 0.667 (LCS 2: P 1, R 0.5)
    bleu(answers, references); exact_match(["Refund "], ["refund"])  # 1.0
    perplexity(model, tokenizer, records)                            # {"perplexity": 7.9, "tokens": 812, ...}
"""
from __future__ import annotations

import math
import string
from typing import Any, Callable, Iterable

from curation.data.records import Record
from training.quality import check_paired, rouge_l

EXACT_MATCH_TASKS = ("classification", "extraction")


def bleu(predictions: list[str], references: list[str]) -> float | None:
    """Corpus BLEU (sacrebleu's default 13a tokenisation, 0..100); None when there is nothing to score."""
    check_paired(predictions, references)
    if not predictions:
        return None
    import sacrebleu
    return float(sacrebleu.corpus_bleu(predictions, [references]).score)


def normalize_answer(text: str) -> str:
    """Lower case, single spaces, no punctuation at either end: 'Refund.' and ' refund' compare equal."""
    return " ".join(text.lower().split()).strip(string.punctuation + " ")


def exact_match(predictions: list[str], references: list[str]) -> float | None:
    """Share of answers equal to their reference after ``normalize_answer``; None when there are none."""
    check_paired(predictions, references)
    if not predictions:
        return None
    hits = sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references))
    return hits / len(predictions)


def wants_exact_match(record: Record) -> bool:
    """Classification and extraction records have one right answer, so exact match is meaningful."""
    return str(record.meta.get("task", "")).lower() in EXACT_MATCH_TASKS


def reference_pairs(records: Iterable[Record]) -> list[tuple[list[dict[str, str]], str, Record]]:
    """(conversation before the last assistant turn, that turn, the record) for records that have one."""
    out = []
    for record in records:
        last = max((i for i, m in enumerate(record.messages) if m["role"] == "assistant"), default=None)
        if last is not None and any(m["role"] == "user" for m in record.messages[:last]):
            out.append((record.messages[:last], record.messages[last]["content"], record))
    return out


def answer_metrics(predictions: list[str], references: list[str], *,
                   exact: list[bool] | None = None) -> dict[str, Any]:
    """ROUGE-L, BLEU and (over the flagged items) exact match of one model's answers."""
    check_paired(predictions, references)
    flagged = [i for i, on in enumerate(exact or []) if on]
    return {"rouge_l": rouge_l(predictions, references), "bleu": bleu(predictions, references),
            "exact_match": exact_match([predictions[i] for i in flagged], [references[i] for i in flagged]),
            "exact_match_items": len(flagged), "answers": len(predictions)}


def perplexity(model, tokenizer, records: list[Record], *, sequence_len: int = 512, batch_size: int = 8,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Perplexity of the records' assistant tokens under ``model``: exp(total NLL / assistant tokens).

    Conversations are cut at ``sequence_len`` tokens; those left with no assistant token are skipped.
    """
    import torch
    from training.data import tokenize_records
    tokenized = tokenize_records(tokenizer, records, sequence_len)
    order = sorted(range(len(tokenized.input_ids)), key=lambda i: len(tokenized.input_ids[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total_nll, total_tokens = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = [order[i] for i in range(start, min(start + batch_size, len(order)))]
            width = max(len(tokenized.input_ids[i]) for i in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.bool)
            for n, i in enumerate(rows):
                length = len(tokenized.input_ids[i])
                ids[n, :length] = torch.tensor(tokenized.input_ids[i])
                attention[n, :length] = 1
                mask[n, :length] = torch.tensor(tokenized.assistant_masks[i], dtype=torch.bool)
            device = next(model.parameters()).device
            with torch.inference_mode():
                logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float().cpu()
            # Token t is predicted from the logits at t-1.
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
            target = ids[:, 1:]
            picked = logprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            scored = mask[:, 1:]
            total_nll -= float(picked[scored].sum())
            total_tokens += int(scored.sum())
            if progress:
                progress(min(start + batch_size, len(order)), len(order))
    finally:
        if was_training:
            model.train()
    if not total_tokens:
        return {"perplexity": None, "mean_nll": None, "tokens": 0, "conversations": 0}
    mean_nll = total_nll / total_tokens
    return {"perplexity": math.exp(mean_nll), "mean_nll": mean_nll, "tokens": total_tokens,
            "conversations": len(order), "cut_at_sequence_len": tokenized.truncated}


def format_metric(name: str, value: Any) -> str:
    """A metric as the tables show it: ROUGE-L and exact match as 0.xxx, BLEU as xx.x, perplexity as x.xx."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if name == "bleu":
        return f"{value:.1f}"
    if name == "perplexity":
        return f"{value:.2f}"
    return f"{value:.3f}"
