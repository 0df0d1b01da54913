"""Real public files import by their schema's name: Dolly, Alpaca (with its empty outputs), ShareGPT with tool
turns, LLaMA-Factory's content parts and preference pairs, OASST2 trees; a column mapping works for every file
type; skipping bad records keeps the list with the version. The slices are under tests/data (see its README)."""
import json
from pathlib import Path

import pytest

from core.errors import InputProblem, TuneloopError
from curation.data import versions as V
from curation.data.formats import parse_column_map, read_records
from curation.data.imports import import_file, skipped_records
from tests.conftest import write_jsonl
from tests.test_curation_cli import cli

DATA = Path(__file__).parent / "data"
DOLLY, ALPACA = DATA / "dolly_200.jsonl", DATA / "alpaca_slice.json"
GLAIVE, DPO = DATA / "glaive_toolcall_slice.json", DATA / "dpo_sharegpt_slice.json"
PARTS, OASST = DATA / "v1_sft_parts_slice.jsonl", DATA / "oasst2_slice.jsonl"
DOLLY_COLUMNS = "prompt=instruction,input=context,completion=response"


def dolly_rows():
    return [json.loads(line) for line in DOLLY.read_text(encoding="utf-8").splitlines()]


def test_dolly_is_recognised_by_its_fields_and_by_name_with_the_context_in_the_user_turn():
    rows = dolly_rows()
    result = read_records(DOLLY)
    assert result.format == "dolly" and len(result.records) == len(rows) == 104
    first = result.records[0]
    assert first.messages == [{"role": "user", "content": f"{rows[0]['instruction']}\n\n{rows[0]['context']}"},
                              {"role": "assistant", "content": rows[0]["response"]}]
    assert first.meta == {"category": "closed_qa"}
    no_context = next(i for i, row in enumerate(rows) if not row["context"])
    assert result.records[no_context].messages[0]["content"] == rows[no_context]["instruction"]
    forced = read_records(DOLLY, format="dolly")
    assert [r.messages for r in forced.records] == [r.messages for r in result.records]


def test_dolly_through_a_column_mapping_gives_the_same_records_in_every_file_type(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    rows = dolly_rows()[:20]
    mapping = parse_column_map(DOLLY_COLUMNS)
    expected = [r.messages for r in read_records(DOLLY, limit=20).records]
    (tmp_path / "d.json").write_text(json.dumps(rows), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    with (tmp_path / "d.csv").open("w", newline="", encoding="utf-8") as fh:
        import csv
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for path in (DOLLY, tmp_path / "d.json", tmp_path / "d.parquet", tmp_path / "hf", tmp_path / "d.csv"):
        result = read_records(path, column_map=mapping, limit=20)
        assert [r.messages for r in result.records] == expected, path.name
        assert result.records[0].meta["category"] == "closed_qa", path.name


@pytest.mark.parametrize("kind", ["jsonl", "json", "parquet", "hf"])
def test_a_mapped_column_the_file_lacks_is_refused_naming_it_and_the_columns_present(tmp_path, kind):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    rows = dolly_rows()[:3]
    path = {"jsonl": DOLLY, "json": tmp_path / "d.json", "parquet": tmp_path / "d.parquet", "hf": tmp_path / "hf"}[kind]
    if kind == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif kind == "hf":
        Dataset.from_list(rows).save_to_disk(str(path))
    with pytest.raises(InputProblem) as info:
        read_records(path, column_map=parse_column_map("prompt=question,completion=response"))
    assert "['question']" in str(info.value) and "'instruction'" in str(info.value) and "'category'" in str(info.value)


def test_a_mapped_csv_column_the_header_lacks_is_refused(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("q,a\nwhere?,here\n", encoding="utf-8")
    with pytest.raises(InputProblem, match=r"\['question'\] not in the header \['q', 'a'\]"):
        read_records(path, column_map=parse_column_map("prompt=question,completion=a"))
    with pytest.raises(TuneloopError, match="unknown field 'answer'"):
        parse_column_map("answer=a")


def test_alpaca_with_an_empty_output_is_refused_by_default_and_skipped_on_request(ws):
    with pytest.raises(InputProblem) as info:
        import_file(ws, ALPACA)
    assert info.value.problems == ["item 31: output is empty"]
    assert V.list_versions(ws) == []
    version, result = import_file(ws, ALPACA, skip_bad=True)
    assert result.format == "alpaca" and result.count == version.num_records == 60
    stored = V.load_records(ws, version.id)
    assert result.skipped == [("item 31", "output is empty")]
    assert skipped_records(ws, version.id) == [("item 31", "output is empty")]
    assert version.counts["skipped"] == 1 and version.params["skip_bad"] is True
    items = json.loads(ALPACA.read_text(encoding="utf-8"))
    assert stored[29].prompt.startswith(items[29]["instruction"])
    assert stored[30].prompt.startswith(items[31]["instruction"])
    again, _ = import_file(ws, DOLLY, skip_bad=True)
    assert skipped_records(ws, again.id) == []


def test_the_cli_skips_bad_records_prints_them_and_show_lists_them(tmp_path):
    ws = tmp_path / "ws"
    strict = cli(ws, "import", ALPACA)
    assert strict.returncode == 1 and "item 31: output is empty" in strict.stderr
    out = cli(ws, "import", ALPACA, "--skip-bad")
    assert out.returncode == 0, out.stderr
    assert "skipped: alpaca_slice.json: item 31: output is empty" in out.stdout
    assert "imported 60 records (alpaca, skipped 1 bad) as v1" in out.stdout
    shown = cli(ws, "show", "v1", "--limit", "0").stdout
    assert "skipped at import: 1 record(s)\n  item 31: output is empty" in shown
    mapped = cli(ws, "import", DOLLY, "--columns", DOLLY_COLUMNS)
    assert "imported 104 records (prompt_completion) as v2" in mapped.stdout, mapped.stderr


def test_the_data_tab_skips_bad_records_lists_them_and_browse_shows_them_later(ws):
    import gradio as gr

    from curation.ui import data
    from tests.tab_page import page

    with gr.Blocks():
        with gr.Tabs():
            w = data.build(ws)
    quiet = dict(progress=lambda *a, **k: None)
    refused = data.import_records(ws, w, page(w, path_box=str(ALPACA)), **quiet)
    assert "item 31: output is empty" in refused[w.status] and "Imported" not in refused[w.status]
    preview = data.preview_file(ws, w, page(w, path_box=str(DOLLY), columns=DOLLY_COLUMNS))
    assert "Detected format **prompt_completion**" in preview[w.status]
    out = data.import_records(ws, w, page(w, path_box=str(ALPACA), skip_bad=True), **quiet)
    assert "Imported **60 records** (alpaca) as **v1**" in out[w.status]
    assert "**Skipped 1 bad records**" in out[w.status] and "- item 31: output is empty" in out[w.status]
    shown = data.browse(ws, w, page(w, browse_pick="v1", search="", page_no=1))
    assert "**1 bad records were skipped at import:**\n- item 31: output is empty" in shown[w.browse_info]


def test_sharegpt_tool_calls_become_assistant_tool_call_turns_and_tool_turns():
    items = json.loads(GLAIVE.read_text(encoding="utf-8"))
    result = read_records(GLAIVE)
    assert result.format == "sharegpt" and len(result.records) == 40
    first, turns = result.records[0], items[0]["conversations"]
    call = next(t for t in turns if t["from"] == "function_call")
    observation = next(t for t in turns if t["from"] == "observation")
    roles = [m["role"] for m in first.messages]
    assert roles == ["user", "assistant", "user", "assistant", "tool", "assistant", "user", "assistant"]
    block = first.messages[3]["content"]
    assert block.startswith("<tool_call>\n") and block.endswith("\n</tool_call>")
    assert json.loads(block.removeprefix("<tool_call>\n").removesuffix("\n</tool_call>")) == json.loads(call["value"])
    assert first.messages[4]["content"] == observation["value"]
    assert json.loads(first.meta["tools"])[0]["name"] == "search_recipes"
    from curation.ui.common import chat_messages
    shown = chat_messages(first)[4]
    assert shown["role"] == "assistant" and shown["metadata"]["title"] == "Tool answer"   # Browse's conversation
    calls = sum(t["from"] == "function_call" for item in items for t in item["conversations"])
    assert sum(m["content"].startswith("<tool_call>") for r in result.records for m in r.messages) == calls


def test_a_tool_conversation_renders_through_the_chat_template_and_trains_only_on_assistant_turns(tmp_path):
    from tests.tiny_model import build_tiny_model
    from training.data import assistant_token_mask
    from transformers import AutoTokenizer

    record = read_records(GLAIVE).records[0]
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "tiny"))
    text = tokenizer.apply_chat_template(record.messages, tokenize=False)
    assert "<|im_start|>tool\n" + record.messages[4]["content"] + "<|im_end|>" in text
    assert "<|im_start|>assistant\n<tool_call>\n" in text
    ids, mask = assistant_token_mask(tokenizer, record.messages)
    trained = tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert '"name": "search_recipes"' in trained and record.messages[4]["content"][:40] not in trained


def test_unknown_sharegpt_and_message_roles_are_errors_naming_the_role_and_the_line(tmp_path):
    items = json.loads(GLAIVE.read_text(encoding="utf-8"))[:3]
    items[2]["conversations"][1]["from"] = "bot"
    path = tmp_path / "g.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    with pytest.raises(InputProblem) as info:
        read_records(path)
    assert info.value.problems == ["item 3: conversations[1].from is 'bot'; expected human, gpt, system, "
                                   "function_call or observation"]
    bad_call = json.loads(GLAIVE.read_text(encoding="utf-8"))[:1]
    turn = next(t for t in bad_call[0]["conversations"] if t["from"] == "function_call")
    turn["value"] = "search the recipes"
    path.write_text(json.dumps(bad_call), encoding="utf-8")
    with pytest.raises(InputProblem, match=r"item 1: conversations\[3\].value must be the JSON of a tool call"):
        read_records(path)


def test_openai_messages_keep_tool_calls_tool_turns_and_names(tmp_path):
    row = {"messages": [
        {"role": "system", "content": "You look up the weather."},
        {"role": "user", "content": "Is it raining in Lyon?", "name": "maya"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "weather", "arguments": "{\"city\": \"Lyon\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "weather", "content": "{\"rain\": true}"},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes, it is raining"},
                                          {"type": "text", "text": "in Lyon."}]},
    ]}
    result = read_records(write_jsonl(tmp_path / "chat.jsonl", [row]), format="openai")
    messages = result.records[0].messages
    assert messages[1] == {"role": "user", "content": "Is it raining in Lyon?", "name": "maya"}
    assert messages[2] == {"role": "assistant",
                           "content": '<tool_call>\n{"name": "weather", "arguments": {"city": "Lyon"}}\n</tool_call>'}
    assert messages[3] == {"role": "tool", "content": "{\"rain\": true}", "name": "weather"}
    assert messages[4]["content"] == "Yes, it is raining\nin Lyon."
    row["messages"][2]["tool_calls"] = [{"type": "function", "function": {"arguments": "{}"}}]
    with pytest.raises(InputProblem, match=r"line 1: messages\[2\].tool_calls\[0\] needs function.name"):
        read_records(write_jsonl(tmp_path / "bad.jsonl", [row]))


def test_content_given_as_parts_is_joined_and_a_non_text_part_is_refused(tmp_path):
    lines = PARTS.read_text(encoding="utf-8").splitlines()
    result = read_records(PARTS)
    assert result.format == "messages" and len(result.records) == len(lines) == 40
    for line, record in zip(lines, result.records):
        turns = json.loads(line)["messages"]
        assert [m["content"] for m in record.messages] == ["\n".join(p["value"] for p in t["content"]) for t in turns]
    row = json.loads(lines[0])
    row["messages"][0]["content"].append({"type": "image", "value": "cat.png"})
    with pytest.raises(InputProblem, match=r"line 1: messages\[0\].content\[1\] is a 'image' part"):
        read_records(write_jsonl(tmp_path / "img.jsonl", [row]))


def test_oasst_trees_become_one_conversation_each_along_the_best_ranked_replies():
    rows = [json.loads(line) for line in OASST.read_text(encoding="utf-8").splitlines()]
    result = read_records(OASST)
    trees = list(dict.fromkeys(r["message_tree_id"] for r in rows))
    assert result.format == "oasst" and [r.id for r in result.records] == trees
    by_id = {r["message_id"]: r for r in rows}
    for record in result.records:
        ids = record.meta["message_ids"]
        assert [m["content"] for m in record.messages] == [by_id[i]["text"] for i in ids]
        assert [m["role"] for m in record.messages] == ["user", "assistant"] * (len(ids) // 2)
        for parent, child in zip(ids, ids[1:]):
            siblings = [r for r in rows if r["parent_id"] == parent]
            ranked = [r["rank"] for r in siblings if r["rank"] is not None]
            assert by_id[child]["parent_id"] == parent
            if ranked:
                assert by_id[child]["rank"] == min(ranked)
        last = by_id[ids[-1]]
        assert not any(r["parent_id"] == last["message_id"] and r["role"] == "assistant" for r in rows)


def test_an_oasst_reply_to_a_missing_message_is_a_problem_of_its_line(tmp_path):
    rows = [json.loads(line) for line in OASST.read_text(encoding="utf-8").splitlines()]
    rows[3]["parent_id"] = "not-a-message"
    path = write_jsonl(tmp_path / "o.jsonl", rows)
    with pytest.raises(InputProblem) as info:
        read_records(path)
    assert info.value.problems == ["line 4: parent_id 'not-a-message' names no message of the file"]
    assert len(read_records(path, skip_bad=True).skipped) == 1


def test_sharegpt_preference_pairs_make_a_preference_version_dpo_reads(ws):
    from training.dpo import load_preference_pairs

    items = json.loads(DPO.read_text(encoding="utf-8"))
    current = import_file(ws, DOLLY)[0]
    version, result = import_file(ws, DPO)
    assert result.format == "preference" and version.kind == "preference" and version.num_records == 40
    assert V.current_version(ws).id == current.id
    stored = V.load_records(ws, version.id)
    first = stored[0]
    assert result.records[0] == first
    assert first.messages == [{"role": "user", "content": items[0]["conversations"][0]["value"]}]
    assert first.chosen == [{"role": "assistant", "content": items[0]["chosen"]["value"]}]
    assert first.rejected == [{"role": "assistant", "content": items[0]["rejected"]["value"]}]
    assert "chosen" not in first.meta and "rejected" not in first.meta
    longest = max(range(40), key=lambda i: len(items[i]["conversations"]))
    assert len(stored[longest].messages) == len(items[longest]["conversations"])
    pairs = load_preference_pairs(ws, version.name)
    assert len(pairs.pairs) == 40 and pairs.pairs[0].chosen == first.chosen
    with pytest.raises(TuneloopError, match="cannot be added to chat records"):
        import_file(ws, DPO, append=True)


def test_trl_preference_shapes_explicit_conversational_and_implicit_prompt(tmp_path):
    rows = [
        {"prompt": "What colour is the sky?", "chosen": "Blue.", "rejected": "Green."},
        {"prompt": [{"role": "user", "content": "Say hi"}], "chosen": [{"role": "assistant", "content": "Hi!"}],
         "rejected": [{"role": "assistant", "content": "No."}]},
        {"chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
         "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]},
    ]
    pairs = read_records(write_jsonl(tmp_path / "p.jsonl", rows)).records
    assert [(p.messages, p.chosen, p.rejected) for p in pairs] == [
        ([{"role": "user", "content": "What colour is the sky?"}], [{"role": "assistant", "content": "Blue."}],
         [{"role": "assistant", "content": "Green."}]),
        ([{"role": "user", "content": "Say hi"}], [{"role": "assistant", "content": "Hi!"}],
         [{"role": "assistant", "content": "No."}]),
        ([{"role": "user", "content": "2+2?"}], [{"role": "assistant", "content": "4"}],
         [{"role": "assistant", "content": "5"}]),
    ]
    same = {"prompt": "Hello?", "chosen": "Hi", "rejected": "Hi"}
    with pytest.raises(InputProblem, match="line 2: chosen and rejected are the same answer"):
        read_records(write_jsonl(tmp_path / "same.jsonl", [rows[0], same]))


def test_skipping_keeps_nothing_partial_when_every_record_is_bad(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "x", "output": ""},
                                                {"instruction": "y", "output": " "}])
    with pytest.raises(InputProblem) as info:
        read_records(path, skip_bad=True)
    assert info.value.problems == ["line 1: output is empty", "line 2: output is empty"]


def test_reading_reports_progress_as_the_file_is_read(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(12_000)]
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    seen = []
    read_records(path, progress=lambda fraction, text: seen.append((fraction, text)))
    assert [text for _, text in seen] == ["read 5,000 records", "read 10,000 records"]
    assert 0.3 < seen[0][0] < seen[1][0] < 0.9


def test_a_workspace_from_before_import_skips_upgrades_with_its_versions(tmp_path):
    from core.workspace import Workspace
    from tests.old_workspace import old_workspace

    old = old_workspace(tmp_path / "ws", without={("curation", "m406_import_skips")})
    made, _ = import_file(old, DOLLY)
    ws = Workspace.open(tmp_path / "ws")
    assert skipped_records(ws, made.id) == [] and V.load_records(ws, made.id)[0].meta == {"category": "closed_qa"}
    version, _ = import_file(ws, ALPACA, skip_bad=True)
    assert skipped_records(ws, version.id) == [("item 31", "output is empty")]


def test_a_mapped_input_column_reaches_alpaca_without_a_mapped_prompt(tmp_path):
    items = json.loads(ALPACA.read_text(encoding="utf-8"))
    row = next(item for item in items if item["input"])
    renamed = {"instruction": row["instruction"], "extra": row["input"], "output": row["output"]}
    record = read_records(write_jsonl(tmp_path / "a.jsonl", [renamed]), column_map={"input": "extra"}).records[0]
    assert record.messages[0]["content"] == f"{row['instruction']}\n\n{row['input']}" and record.meta == {}


def test_oasst_exported_trees_give_the_same_conversations_as_their_message_rows():
    rows = read_records(OASST)
    trees = read_records(DATA / "oasst2_trees_slice.jsonl")
    assert trees.format == "oasst" and len(trees.records) == 6
    assert [(r.id, r.messages, r.meta) for r in trees.records] == [(r.id, r.messages, r.meta) for r in rows.records]


def test_a_dolly_import_labels_its_records_by_category(ws, tmp_path):
    from curation.review.labels import label_field
    version, _ = import_file(ws, DOLLY)
    assert label_field(ws, version.id) == "category"
    alpaca, _ = import_file(ws, ALPACA, skip_bad=True)       # no label field of its own: none chosen
    assert label_field(ws, alpaca.id) is None
