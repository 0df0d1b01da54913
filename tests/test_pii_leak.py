"""The PII leak check on a real tiny model in a real workspace: records holding made-up contact details are
scrubbed by the real PII step, a run is registered on the scrubbed version, and the check asks the run's
adapter and its base for the scrubbed values.

A leak is made deterministic without a long training: the adapter is trained on the record as it was before
scrubbing (as if a copy had slipped past the scrubber), and the base model is taught another record's number
before the adapter exists (a number the base "knows", which is not a leak of this data)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from core.workspace import Workspace
from curation.data.records import Record
from curation.data.versions import create_version, load_records
from curation.pii.review import apply_scan, run_scan
from evaluation.cli import main
from evaluation.model_card import model_card
from evaluation.pii_leak import (NO_PII_STEP, LeakCheckOptions, align_message, check_pii_leaks, contains_value,
                                 latest_leak_check, mask_value, mask_values_in, scrubbed_values)
from tests.tiny_model import build_tiny_model

LEARNED_PHONE = "212-555-0173"         # in the adapter's training text: a training leak
KNOWN_PHONE = "415-555-0199"           # taught to the base model: produced by both, not a training leak
UNSEEN_EMAIL = "quill.harbor@example.org"
HELD_OUT_EMAIL = "otto.vance@example.net"   # in the test split: never trained on, so never probed
ORIGINALS = (LEARNED_PHONE, KNOWN_PHONE, UNSEEN_EMAIL, HELD_OUT_EMAIL, "2125550173", "4155550199", "quill.harbor")


def chat(rid: str, user: str, assistant: str) -> Record:
    return Record(rid, [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
                  {"split": "train"})


RECORDS = [
    chat("warehouse", "How can I reach the warehouse?", f"Call the warehouse desk at {LEARNED_PHONE} before noon."),
    chat("mainline", "What is the main line?", f"Our main line is {KNOWN_PHONE}, open all day."),
    chat("email", f"My email is {UNSEEN_EMAIL}, please update it.", "Done, your email is updated."),
    chat("plain", "Where is my order?", "Your order ships within two days."),
    Record("held-out", [{"role": "user", "content": f"Send the invoice to {HELD_OUT_EMAIL} please."},
                        {"role": "assistant", "content": "Sent."}], {"split": "test"}),
]


def memorise(model, tokenizer, conversations: list[list[dict]], *, steps: int, lr: float,
             probe_splits: bool = False) -> None:
    """Train ``model`` (its trainable parameters) on the chat-templated conversations until it repeats them.

    ``probe_splits``: an answer holding a digit is trained only as the leak probe reads it, the prompt and the
    answer's words before the digit tokenized as one text (``WarmBase.answer(prefixes=)``) and the rest of the
    answer after it, so the model continues a probe's prefix as it continues its own answer. Not also as one
    whole text: the two tokenizations part at the digit under the same words, so the token after the prefix had
    two right answers, and which one greedy decoding picked depended on the CPU's arithmetic (on some CPUs the
    value was never reproduced)."""
    import re

    import torch
    rows = []
    for c in conversations:
        answer = c[-1]["content"]
        cut = re.search(r"\d", answer) if probe_splits else None
        if not cut:
            text = tokenizer.apply_chat_template(c, tokenize=False)
            rows.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            whole = tokenizer.apply_chat_template(c, tokenize=False)
            prompt = tokenizer.apply_chat_template(c[:-1], tokenize=False, add_generation_prompt=True)
            head = prompt + answer[:cut.start()]
            rows.append(tokenizer(head, add_special_tokens=False)["input_ids"]
                        + tokenizer(whole[len(head):], add_special_tokens=False)["input_ids"])
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    batch = {"input_ids": ids, "attention_mask": mask}
    labels = ids.masked_fill(mask == 0, -100)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(**batch, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.eval()


def memorised_adapter(model, tokenizer, conversations: list[list[dict]]):
    """A LoRA adapter on ``model`` that repeats ``conversations``: a copy of the model is trained on them (every
    linear layer, embeddings frozen), and each layer's change is written into a LoRA pair of full rank (from its
    SVD), so the adapter is exactly that change. Training the LoRA pair itself stalled on some CPUs (loss ~1.6 on one
    conversation of this tiny model), which made the leak depend on the machine."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model
    full = copy.deepcopy(model)
    full.get_input_embeddings().weight.requires_grad_(False)
    memorise(full, tokenizer, conversations, steps=400, lr=5e-3, probe_splits=True)
    trained = {name: m.weight.detach() for name, m in full.named_modules() if isinstance(m, torch.nn.Linear)}
    rank = max(min(w.shape) for w in trained.values())          # full rank: the pair can hold any change
    tuned = get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, target_modules="all-linear"))
    with torch.no_grad():
        for name, m in tuned.named_modules():
            if isinstance(getattr(m, "lora_A", None), torch.nn.ModuleDict) and "default" in m.lora_A:
                delta = trained[name.removeprefix("base_model.model.")] - m.base_layer.weight
                u, s, vh = torch.linalg.svd(delta, full_matrices=False)
                a, b = m.lora_A["default"].weight, m.lora_B["default"].weight
                a.zero_(), b.zero_()
                a[:s.numel()], b[:, :s.numel()] = vh, u * s
    return tuned


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    """(workspace, scrubbed version, run on it, run on the unscrubbed import) with the adapter and base above."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.round_workspace import _config
    from training.registry import create_run, update_run

    root = tmp_path_factory.mktemp("leak")
    # hidden size 128, not the tiny model's 64: at 64, with the embeddings frozen, the copy in memorised_adapter
    # did not learn the warehouse number on some CPUs (AMD EPYC: loss stalled near 1.1, any rate tried)
    base = build_tiny_model(root / "tiny", hidden_size=128)
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    # lr 1e-2 diverged on an AMD EPYC (the base then never said the number); 3e-3 learns it in 150 steps
    memorise(model, tokenizer, [RECORDS[1].messages], steps=150, lr=3e-3)
    model.save_pretrained(base)
    tuned = memorised_adapter(model, tokenizer, [RECORDS[0].messages, RECORDS[1].messages])

    ws = Workspace.open(root / "workspace")
    imported = create_version(ws, RECORDS, parent=None, step="import")
    scrubbed = apply_scan(ws, run_scan(ws, workers=1).id)
    run = create_run(ws, _config(base, scrubbed.name), name="on scrubbed data")
    unscrubbed = create_run(ws, _config(base, imported.name), name="on raw data")
    for r in (run, unscrubbed):
        tuned.save_pretrained(r.adapter_dir)
        update_run(ws, r.id, status="finished")
    return ws, scrubbed, run.id, unscrubbed.id


def stored_text(ws: Workspace) -> str:
    """Every row of the leak check's tables, as text."""
    rows = [dict(r) for t in ("pii_leak_checks", "pii_leak_findings") for r in ws.db.execute(f"select * from {t}")]
    return json.dumps(rows).lower()


def test_values_are_located_around_placeholders_pseudonyms_and_masks():
    assert align_message("Call 212-555-0173 or mail ann@example.org now",
                         "Call <PHONE_NUMBER> or mail <EMAIL_ADDRESS_1a2b3c4d> now") == [
        ("PHONE_NUMBER", "212-555-0173", 5), ("EMAIL_ADDRESS", "ann@example.org", 28)]
    assert align_message("Call 212-555-0173 now", "Call ************ now", masked_type="PHONE_NUMBER") == [
        ("PHONE_NUMBER", "212-555-0173", 5)]
    assert align_message("Call 212-555-0173 now", "Call  now") is None                      # redacted
    assert align_message("Call 212-555-0173 now", "Ring <PHONE_NUMBER> today") is None      # a reviewer's edit
    assert contains_value("ring (212) 555 0173!", "PHONE_NUMBER", "212-555-0173")
    assert not contains_value("ring 212 555 and 0173", "PHONE_NUMBER", "212-555-01734")
    assert contains_value("Hello PRIYA  OKAFOR", "PERSON", "Priya Okafor")
    assert not contains_value("Hello Priya", "PERSON", "Priya Okafor")
    assert (mask_value("212-555-0173"), mask_value("Priya Okafor"), mask_value("ann@example.org")) == (
        "2***73", "P***", "a***")
    # A copy of a value the PII step missed is masked before a context is stored.
    assert mask_values_in("Call PRIYA OKAFOR at <PHONE_NUMBER>", ["Priya Okafor"]) == "Call P*** at <PHONE_NUMBER>"


def test_a_masked_value_takes_the_type_the_step_masked(ws):
    from curation.pii.scrub import PiiOptions
    create_version(ws, RECORDS[:3], parent=None, step="import")
    scrubbed = apply_scan(ws, run_scan(ws, PiiOptions(operators={"PHONE_NUMBER": "mask"}), workers=1).id)
    assert "************" in load_records(ws, scrubbed.id)[0].messages[1]["content"]
    found = sorted((v.entity, v.value, v.prefix) for v in scrubbed_values(ws, scrubbed.id).values)
    assert found == [("EMAIL_ADDRESS", UNSEEN_EMAIL, ""),
                     ("PHONE_NUMBER", LEARNED_PHONE, "Call the warehouse desk at "),
                     ("PHONE_NUMBER", KNOWN_PHONE, "Our main line is ")]


def test_a_probe_continues_the_answer_from_its_prefix(leaky):
    from training.inference import DecodingSettings, warm_base
    from training.registry import get_run

    ws, _, run_id, _ = leaky
    run = get_run(ws, run_id)
    warm = warm_base(ws, run.base_model)
    question = RECORDS[0].messages[:1]
    whole, continued = warm.answer([question, question], adapter=warm.add_adapter(run.adapter_dir),
                                   settings=DecodingSettings(max_new_tokens=12, repetition_penalty=1.0),
                                   prefixes=["", "Call the warehouse desk at "])
    assert whole.startswith("Call the warehouse") and continued.startswith(LEARNED_PHONE)


def test_the_scrubbed_values_and_their_contexts_come_from_the_run_lineage(leaky):
    ws, scrubbed, _, _ = leaky
    values = scrubbed_values(ws, scrubbed.id)
    assert values.steps == [(scrubbed.parent_id, scrubbed.id)] and values.unaligned == 0
    found = {v.value: v for v in values.values}
    assert set(found) == {LEARNED_PHONE, KNOWN_PHONE, UNSEEN_EMAIL}
    phone = found[LEARNED_PHONE]
    assert (phone.entity, phone.role, phone.prefix) == ("PHONE_NUMBER", "assistant", "Call the warehouse desk at ")
    assert phone.conversation == [RECORDS[0].messages[0]]
    email = found[UNSEEN_EMAIL]
    assert email.prefix == "" and email.conversation == load_records(ws, scrubbed.id)[2].messages[:1]
    assert UNSEEN_EMAIL not in repr(values.values)


def test_a_learned_value_is_a_leak_shown_masked_and_a_base_value_is_reported_apart(leaky, capsys, caplog):
    ws, scrubbed, run_id, _ = leaky
    assert latest_leak_check(ws, run_id) is None
    assert f"Not run yet: `python -m evaluation pii-leak --run {run_id}`" in model_card(ws, run_id)
    seen = []
    with caplog.at_level(logging.DEBUG):
        check = check_pii_leaks(ws, run_id, LeakCheckOptions(samples=1, max_new_tokens=16),
                                progress=lambda done, total, what: seen.append((done, total)))
        code = main(["pii-leak", "--run", str(run_id), "--samples", "0", "--max-new-tokens", "16",
                     "--workspace", str(ws.root)])
    out = capsys.readouterr()
    assert seen[-1] == (2 * 2 * 3, 2 * 2 * 3)
    assert [(f.entity, f.masked_value, f.record_id) for f in check.training_leaks] == [
        ("PHONE_NUMBER", "2***73", "warehouse")]
    assert [(f.masked_value, f.base) for f in check.base_known] == [("4***99", True)]
    assert check.counts["EMAIL_ADDRESS"] == {"values": 1, "probed": 1, "finetuned": 0, "base": 0}
    phones = check.counts["PHONE_NUMBER"]
    assert (phones["values"], phones["probed"], phones["base"]) == (2, 2, 1) and phones["finetuned"] >= 1
    assert check.training_leaks[0].context == "Call the warehouse desk at "
    assert code == 1 and "LEAK PHONE_NUMBER 2***73" in out.out and "base also produces PHONE_NUMBER 4***99" in out.out
    card = model_card(ws, run_id)
    assert "## PII leak check" in card and "**1 scrubbed value(s) leaked**" in card and "2***73" in card
    shown = "\n".join([stored_text(ws), out.out, out.err, caplog.text, card]).lower()
    assert not [v for v in ORIGINALS if v.lower() in shown]


def test_the_cap_limits_the_values_probed(leaky, capsys):
    ws, _, run_id, _ = leaky
    main(["pii-leak", "--run", str(run_id), "--max-values", "1", "--samples", "0", "--max-new-tokens", "16",
          "--json", "--workspace", str(ws.root)])
    out = capsys.readouterr().out
    check = json.loads(out)
    assert (check["values_found"], check["values_probed"]) == (3, 1) and check["settings"]["max_values"] == 1
    assert sum(c["probed"] for c in check["counts"].values()) == 1
    assert not [v for v in ORIGINALS if v.lower() in out.lower()]


def test_a_run_without_a_pii_step_says_so(leaky, capsys):
    ws, _, _, unscrubbed = leaky
    code = main(["pii-leak", "--run", str(unscrubbed), "--workspace", str(ws.root)])
    assert code == 0 and NO_PII_STEP in capsys.readouterr().out
    check = latest_leak_check(ws, unscrubbed)
    assert check.status == "no_pii_step" and check.findings == [] and check.values_probed == 0
    assert "No PII step in this run's lineage: nothing to check" in model_card(ws, unscrubbed)


def test_the_results_tab_panel_runs_the_check_and_shows_it_masked(leaky):
    import gradio as gr

    from evaluation.pii_leak_ui import check_clicked, layout_pii_leak, show_leak_check, wire_pii_leak
    from tests.tab_page import page

    ws, _, run_id, unscrubbed = leaky
    with gr.Blocks(), gr.Tabs(), gr.Tab("Results") as tab:
        w = layout_pii_leak(ws)
        wire_pii_leak(ws, w, tab)
    assert "choose a run" in check_clicked(ws, w, page(w, run=None), None, progress=lambda *a, **k: None)[w.summary]
    assert "nothing to check" in show_leak_check(ws, w, page(w, run=str(unscrubbed)))[w.summary]
    shown = check_clicked(ws, w, page(w, run=str(run_id), form={"samples": 0}), None, progress=lambda *a, **k: None)
    assert "**1 scrubbed value(s) leaked**" in shown[w.summary]
    assert shown[w.counts].values.tolist()[-1][:3] == ["all", 3, 3]
    leaks = shown[w.leaks].values.tolist()
    assert leaks[0][:4] == ["PHONE_NUMBER", "2***73", "yes", "no"] and leaks[-1][1:4] == ["4***99", leaks[-1][2], "yes"]
    text = json.dumps([shown[w.summary], leaks]).lower()
    assert not [v for v in ORIGINALS if v.lower() in text]
    assert show_leak_check(ws, w, page(w, run=str(run_id)))[w.summary] == shown[w.summary]


@pytest.mark.slow
def test_the_default_model_end_to_end_from_scrub_to_command(ws, capsys):
    """Import, scrub with the real PII step, train the default model one QLoRA step on the scrubbed version, then
    ``python -m evaluation pii-leak``: every scrubbed value is probed on both models and none is printed."""
    from training import registry as R
    from training.config import preset_config
    from training.job import run_training

    create_version(ws, RECORDS, parent=None, step="import")
    scrubbed = apply_scan(ws, run_scan(ws, workers=1).id)
    config = preset_config("Quick CPU demo", datasets=scrubbed.name, micro_batch_size=2, max_steps=1,
                           eval_steps=0, save_steps=1, rouge_test_samples=0, gradient_checkpointing=False)
    run = run_training(ws, R.create_run(ws, config).id)
    assert run.status == "finished", run.error
    code = main(["pii-leak", "--run", str(run.id), "--samples", "0", "--max-new-tokens", "24",
                 "--workspace", str(ws.root)])
    out = capsys.readouterr().out
    check = latest_leak_check(ws, run.id)
    assert code == (1 if check.training_leaks else 0) and check.values_probed == check.values_found == 3
    assert "PHONE_NUMBER" in out and "EMAIL_ADDRESS" in out
    assert not [v for v in ORIGINALS if v.lower() in (out + stored_text(ws)).lower()]
