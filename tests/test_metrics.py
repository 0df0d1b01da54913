"""Automatic metrics against values worked out by hand, and perplexity on a tiny model built here."""
from __future__ import annotations

import math

import pytest

from core.errors import TuneloopError
from curation.data.records import Record
from evaluation.metrics import (answer_metrics, bleu, exact_match, normalize_answer, perplexity, reference_pairs,
                                wants_exact_match)
from training.quality import rouge_l, rouge_l_scores
from tests.tiny_model import build_tiny_model


def test_rouge_l_known_values():
    # LCS "open settings" = 2 words: precision 2/2, recall 2/4, F1 = 2/3.
    assert rouge_l(["Open Settings."], ["Open the Settings app."]) == pytest.approx(2 / 3)
    assert rouge_l_scores(["the cat sat"], ["the cat sat"]) == [pytest.approx(1.0)]
    assert rouge_l_scores(["dog"], ["the cat sat"]) == [0.0]
    # Stemming: "refunds" and "refund" are one word; mean over two answers.
    assert rouge_l(["refunds issued", "nothing"], ["refund issued", "something else"]) == pytest.approx(0.5)
    assert rouge_l([], []) is None


def test_bleu_known_values():
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    # n-gram precisions 5/6, 3/5, 1/4, 1/6; equal lengths so no brevity penalty.
    expected = 100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25
    assert bleu(["the cat is on the mat"], ["the cat sat on the mat"]) == pytest.approx(expected)
    assert bleu(["completely different words here"], ["the cat sat on the mat"]) == pytest.approx(0.0)
    assert bleu([], []) is None


def test_exact_match_normalises_case_space_and_edge_punctuation():
    assert normalize_answer("  Refund. ") == "refund"
    assert exact_match(["Refund.", "order  status", "billing"], ["refund", "Order status", "warranty"]) \
        == pytest.approx(2 / 3)
    assert exact_match([], []) is None
    with pytest.raises(TuneloopError, match="each answer needs its reference"):
        exact_match(["a"], [])


def test_answer_metrics_counts_exact_match_only_on_flagged_items():
    m = answer_metrics(["refund", "a long answer"], ["refund", "another long answer"], exact=[True, False])
    assert m["exact_match"] == 1.0 and m["exact_match_items"] == 1 and m["answers"] == 2
    assert 0 < m["rouge_l"] < 1
    assert answer_metrics(["x"], ["y"])["exact_match"] is None


def test_which_records_get_exact_match_and_their_references():
    clf = Record("a", [{"role": "user", "content": "Intent of: where is my parcel?"},
                       {"role": "assistant", "content": "order_status"}], {"task": "classification"})
    chat = Record("b", [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "hello"}], {})
    no_answer = Record("c", [{"role": "user", "content": "hi"}], {})
    assert wants_exact_match(clf) and not wants_exact_match(chat)
    pairs = reference_pairs([clf, chat, no_answer])
    assert [(len(conv), ref, rec.id) for conv, ref, rec in pairs] == [(1, "order_status", "a"), (2, "hello", "b")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = build_tiny_model(tmp_path_factory.mktemp("ppl") / "tiny")
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


RECORDS = [Record("r1", [{"role": "user", "content": "Where is my order?"},
                         {"role": "assistant", "content": "Your order ships within two days."}]),
           Record("r2", [{"role": "user", "content": "Can I get a refund?"},
                         {"role": "assistant", "content": "Yes, refunds are possible within 30 days of purchase."}])]


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tiny):
    import copy

    import torch
    model, tokenizer = tiny
    uniform = copy.deepcopy(model)
    with torch.no_grad():
        uniform.get_output_embeddings().weight.zero_()     # every logit 0: each token has probability 1/V
    result = perplexity(uniform, tokenizer, RECORDS)
    assert result["perplexity"] == pytest.approx(uniform.config.vocab_size, rel=1e-4)
    assert result["conversations"] == 2 and result["tokens"] > 10


def test_perplexity_matches_the_models_own_loss_on_assistant_tokens(tiny):
    import torch
    from training.data import assistant_token_mask
    model, tokenizer = tiny
    nll, count = 0.0, 0
    for record in RECORDS:
        ids, mask = assistant_token_mask(tokenizer, record.messages)
        labels = torch.tensor([t if m else -100 for t, m in zip(ids, mask)])
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ids]), labels=labels.unsqueeze(0)).loss
        n = int((labels[1:] != -100).sum())
        nll += float(loss) * n
        count += n
    result = perplexity(model, tokenizer, RECORDS, batch_size=2)   # both in one padded batch
    assert result["tokens"] == count
    assert result["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_perplexity_with_no_answers_is_none(tiny):
    model, tokenizer = tiny
    result = perplexity(model, tokenizer, [Record("q", [{"role": "user", "content": "hi"}])])
    assert result["perplexity"] is None and result["tokens"] == 0
