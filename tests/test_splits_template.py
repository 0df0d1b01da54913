"""Template preview: the rendered text, the trained tokens (assistant turns only), the cut-off, the histogram."""
from __future__ import annotations

import pytest

from curation.data.records import Record
from training.template_preview import CONTEXT, CUT, TRAINED, preview_record, token_length_stats
from tests.tiny_model import CHATML, CORPUS, SPECIAL


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS * 4, trainer=trainers.BpeTrainer(
        vocab_size=384, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                  pad_token="<pad>", unk_token="<|endoftext|>")
    tok.chat_template = CHATML
    return tok


def record(*turns: tuple[str, str], rid: str = "r1") -> Record:
    return Record(id=rid, messages=[{"role": role, "content": text} for role, text in turns])


def test_preview_is_the_rendered_text_with_only_answers_trained(tokenizer):
    r = record(("system", "Be brief."), ("user", "Where is my order?"), ("assistant", "It ships in two days."),
               ("user", "Thanks!"), ("assistant", "You are welcome."))
    preview = preview_record(tokenizer, r, sequence_len=512)
    assert preview.text == tokenizer.apply_chat_template(r.messages, tokenize=False)
    trained = [text for text, kind in preview.segments if kind == TRAINED]
    # Each answer with its end-of-turn token (and the newline the template puts after it): the model learns to stop.
    assert trained == ["It ships in two days.<|im_end|>\n", "You are welcome.<|im_end|>\n"]
    context = "".join(text for text, kind in preview.segments if kind == CONTEXT)
    assert "Be brief." in context and "Where is my order?" in context and "<|im_start|>assistant\n" in context
    assert preview.tokens == preview.trained_tokens + preview.context_tokens and preview.cut_tokens == 0
    assert preview.trained_tokens == sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in trained)


def test_tokens_past_the_sequence_length_are_shown_cut_off(tokenizer):
    r = record(("user", "How do I reset my password? " * 3), ("assistant", "Open Settings, choose Security. " * 6))
    full = preview_record(tokenizer, r, sequence_len=10_000)
    cut = preview_record(tokenizer, r, sequence_len=40)
    assert cut.text == full.text
    assert cut.segments[-1][1] == CUT
    assert cut.tokens == full.tokens and cut.cut_tokens == full.tokens - 40
    assert cut.trained_tokens + cut.context_tokens == 40


def test_dataset_histogram_marks_the_cut_off(tokenizer):
    records = [record(("user", "Where is my order? " * k), ("assistant", "It ships soon."), rid=f"r{k}")
               for k in range(1, 21)]
    stats = token_length_stats(tokenizer, records, sequence_len=60)
    assert len(stats.lengths) == 20 and stats.lengths == sorted(stats.lengths)
    assert stats.over == sum(1 for n in stats.lengths if n > 60) > 0
    rows = stats.histogram(bins=10)
    assert sum(r["records"] for r in rows) == 20
    assert sum(r["records"] for r in rows if r["part"] == CUT) == stats.over
    assert all(r["tokens"] + 1 > 0 for r in rows)
    assert stats.summary()["cut off"] == stats.over


def test_cli_prints_the_rendered_record_with_trained_text_marked(tmp_path, capsys):
    from training.template_preview import main
    from tests.conftest import chat, write_jsonl
    from tests.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    data = write_jsonl(tmp_path / "d.jsonl", [chat("Where is my order?", "It ships soon.", id="a"),
                                              chat("Can I get a refund?", "Yes, within 30 days.", id="b")])
    assert main([str(data), "--record", "b", "--model", str(model), "--sequence-len", "64", "--plain"]) == 0
    out = capsys.readouterr().out
    assert "<|im_start|>user\nCan I get a refund?<|im_end|>" in out
    assert "[[Yes, within 30 days.<|im_end|>\n]]" in out
    assert "dataset: records 2" in out
    assert main([str(data), "--record", "zzz", "--model", str(model)]) == 2
    assert "no record 'zzz'" in capsys.readouterr().err


@pytest.mark.slow
def test_default_model_template_preview():
    from curation.data.demo import demo_records
    from training.template_preview import load_preview_tokenizer

    # No workspace: the converted model lands in the per-user cache, so only the first run converts.
    tokenizer, name = load_preview_tokenizer("default")
    assert "SmolLM2" in name
    r = demo_records(5)[0]
    preview = preview_record(tokenizer, r, sequence_len=512)
    assert preview.text == tokenizer.apply_chat_template(r.messages, tokenize=False)
    trained = "".join(text for text, kind in preview.segments if kind == TRAINED)
    assert r.answer in trained and r.prompt not in trained
    assert 0 < preview.trained_tokens < preview.tokens


def train_tab(ws):
    import gradio as gr
    from training.ui import build_train_tab

    with gr.Blocks():
        with gr.Tabs():
            return build_train_tab(ws)


def test_the_train_tabs_preview_renders_a_split_record_for_the_base_model(ws, tmp_path):
    from curation.data.versions import create_version
    from tests.conftest import chat
    from tests.tab_page import page
    from tests.tiny_model import build_tiny_model
    from training.ui import template_preview, token_lengths

    model = build_tiny_model(tmp_path / "tiny")
    records = [Record.from_dict(chat(f"Where is order {i}?", f"Order {i} ships soon.", id=f"r{i}")) for i in range(6)]
    for i, r in enumerate(records):
        r.meta["split"] = ("train", "train", "train", "train", "val", "test")[i]
    create_version(ws, records, parent=None, step="split")
    w = train_tab(ws)

    def shown(rid):
        return template_preview(ws, w, page(w, split="v1", base_model=str(model), seq_len=64, record_id=rid))

    out = shown("")
    counts, segments = out[w.preview_md], out[w.preview_hl]
    assert "**r5** (test) rendered for **tiny**" in counts and "trained** (assistant turns)" in counts
    assert ("Order 5 ships soon.<|im_end|>\n", TRAINED) in segments
    assert any(kind == CONTEXT and "Where is order 5?" in text for text, kind in segments)
    assert "**r2** (train)" in shown("r2")[w.preview_md]
    missing = shown("nope")
    assert "there is no record &#x27;nope&#x27; in v1" in missing[w.preview_md] and w.preview_hl not in missing
    lengths = token_lengths(ws, w, page(w, split="v1", base_model=str(model), seq_len=8),
                            progress=lambda *a, **k: None)
    summary, chart = lengths[w.tokens_md], lengths[w.tokens_plot]
    histogram = chart["value"]
    assert "6 conversations for **tiny**" in summary and "6 (100.0%) longer than the sequence length 8" in summary
    assert histogram[histogram["part"] == CUT]["records"].sum() == 6
    # bins are labels in numeric order (on a number axis the bars are hairlines)
    assert chart["sort"] == sorted(set(histogram["tokens"]), key=int) and histogram["tokens"].map(type).eq(str).all()


def test_the_train_tabs_preview_refuses_a_version_without_splits(ws, tmp_path):
    from curation.data.versions import create_version
    from tests.conftest import chat
    from tests.tab_page import page
    from training.ui import template_preview

    create_version(ws, [Record.from_dict(chat("Hi?", "Hello.", id="a"))], parent=None, step="import")
    w = train_tab(ws)
    out = template_preview(ws, w, page(w, split="v1", base_model="unused", seq_len=64, record_id=""))
    assert "v1 has records without a train/val/test split" in out[w.preview_md]
