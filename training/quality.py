"""Is the tuned model better? ROUGE-L of the base and the tuned model's answers against the
reference answers of test conversations, from the same weights (the adapter switched off and on)."""
from __future__ import annotations

from curation.data.records import Record


def answer_prompts(records: list[Record]) -> list[tuple[list[dict[str, str]], str]]:
    """(conversation up to the last assistant turn, that turn's reference answer) for each record."""
    out = []
    for record in records:
        last = max((i for i, m in enumerate(record.messages) if m["role"] == "assistant"), default=None)
        if last is not None:
            out.append((record.messages[:last], record.messages[last]["content"]))
    return out


def generate_answers(model, tokenizer, conversations: list[list[dict[str, str]]], *, max_new_tokens: int = 64,
                     batch_size: int = 16) -> list[str]:
    """Greedy answers, in batches (left padding so every prompt ends where generation starts)."""
    import torch
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    answers = []
    try:
        for start in range(0, len(conversations), batch_size):
            texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                     for c in conversations[start:start + batch_size]]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            answers += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return [a.strip() for a in answers]


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (0..1)."""
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
    return sum(scores) / len(scores) if scores else 0.0


def rouge_base_vs_tuned(peft_model, tokenizer, records: list[Record], *, max_new_tokens: int = 64) -> dict:
    """ROUGE-L of the base (adapter off) and the tuned model on the records' last answers."""
    pairs = answer_prompts(records)
    prompts = [p for p, _ in pairs]
    references = [r for _, r in pairs]
    was_training = peft_model.training
    peft_model.eval()
    with peft_model.disable_adapter():
        base = generate_answers(peft_model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    tuned = generate_answers(peft_model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    if was_training:
        peft_model.train()
    return {"rouge_l_base": round(rouge_l(base, references), 4), "rouge_l_tuned": round(rouge_l(tuned, references), 4),
            "rouge_samples": len(references),
            "rouge_example": {"prompt": prompts[0][-1]["content"] if prompts else "", "reference": references[0] if references else "",
                              "base": base[0] if base else "", "tuned": tuned[0] if tuned else ""}}
