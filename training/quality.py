"""Is the tuned model better? ROUGE-L of the base and the tuned model's answers against the
reference answers of test conversations, from the same weights (the adapter switched off and on).

``rouge_l`` here is Tuneloop's one ROUGE-L; evaluation's automatic metrics use it too.
"""
from __future__ import annotations

from dataclasses import replace

from core.errors import TuneloopError
from curation.data.records import Record
from training.inference import DecodingSettings, WarmBase

# Greedy, no repetition penalty: the answers training has always scored.
QUALITY_SETTINGS = DecodingSettings(max_new_tokens=64, repetition_penalty=1.0)


def answer_prompts(records: list[Record]) -> list[tuple[list[dict[str, str]], str]]:
    """(conversation up to the last assistant turn, that turn's reference answer) for each record."""
    out = []
    for record in records:
        last = max((i for i, m in enumerate(record.messages) if m["role"] == "assistant"), default=None)
        if last is not None:
            out.append((record.messages[:last], record.messages[last]["content"]))
    return out


def check_paired(predictions: list[str], references: list[str]) -> None:
    """Every answer needs its reference answer; raises TuneloopError when the counts differ."""
    if len(predictions) != len(references):
        raise TuneloopError(f"{len(predictions)} answers but {len(references)} reference answers; "
                            f"each answer needs its reference")


def rouge_l_scores(predictions: list[str], references: list[str]) -> list[float]:
    """ROUGE-L F1 (longest common subsequence of words, with stemming) of each answer against its reference."""
    check_paired(predictions, references)
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]


def rouge_l(predictions: list[str], references: list[str]) -> float | None:
    """Mean ROUGE-L F1 (0..1); None when there is nothing to score."""
    scores = rouge_l_scores(predictions, references)
    return sum(scores) / len(scores) if scores else None


def rouge_base_vs_tuned(peft_model, tokenizer, records: list[Record], *, max_new_tokens: int = 64,
                        progress=None) -> dict:
    """ROUGE-L of the base (adapter off) and the tuned model on the records' last answers.

    ``peft_model`` is the training process's model, already loaded; it answers through the inference
    module's loop, 16 conversations at a time; ``progress(done, total)`` hears of each batch of answers.
    """
    pairs = answer_prompts(records)
    prompts = [p for p, _ in pairs]
    references = [r for _, r in pairs]
    settings = replace(QUALITY_SETTINGS, max_new_tokens=max_new_tokens)
    warm = WarmBase.wrap(peft_model, tokenizer, name="the model in training")
    base, tuned = [], []
    for adapter, answers in ((None, base), (warm.active_adapter, tuned)):
        for start in range(0, len(prompts), 16):
            if progress:
                progress(len(base) + len(tuned), 2 * len(prompts))
            answers += warm.answer(prompts[start:start + 16], adapter=adapter, settings=settings)
    if progress:
        progress(len(base) + len(tuned), 2 * len(prompts))
    return {"rouge_l_base": round(rouge_l(base, references) or 0.0, 4),
            "rouge_l_tuned": round(rouge_l(tuned, references) or 0.0, 4),
            "rouge_samples": len(references),
            "rouge_example": {"prompt": prompts[0][-1]["content"] if prompts else "",
                              "reference": references[0] if references else "",
                              "base": base[0] if base else "", "tuned": tuned[0] if tuned else ""}}
