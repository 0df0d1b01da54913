"""Every input format imports; every kind of bad input gets a message naming file, line and field."""
import json

import pytest

from core.errors import InputProblem, TuneloopError
from curation.data.formats import parse_column_map, read_records
from tests.conftest import chat, write_jsonl


def test_messages_jsonl_keeps_ids_and_meta(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [chat("hi", "hello", id="t1", label="greet"),
                                              chat("bye", "see you", meta={"customer": "c1"})])
    result = read_records(path)
    assert result.format == "messages"
    assert [r.id for r in result.records][0] == "t1"
    assert result.records[0].meta == {"label": "greet"}
    assert result.records[1].meta == {"customer": "c1"}
    assert result.records[1].id.startswith("r")  # derived, stable id
    assert read_records(path).records[1].id == result.records[1].id


def test_json_array(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([chat("q", "a")]))
    assert read_records(path).records[0].messages[1] == {"role": "assistant", "content": "a"}


def test_alpaca(tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Summarise", "input": "long text", "output": "short"},
        {"instruction": "Say hi", "input": "", "output": "hi"}])
    result = read_records(path)
    assert result.format == "alpaca"
    assert result.records[0].messages == [{"role": "user", "content": "Summarise\n\nlong text"},
                                          {"role": "assistant", "content": "short"}]
    assert result.records[1].messages[0]["content"] == "Say hi"


def test_sharegpt(tmp_path):
    path = write_jsonl(tmp_path / "sg.jsonl", [{"id": 7, "conversations": [
        {"from": "system", "value": "be nice"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}])
    rec = read_records(path).records[0]
    assert rec.id == "7"
    assert [m["role"] for m in rec.messages] == ["system", "user", "assistant"]


def test_prompt_completion_plain_and_conversational(tmp_path):
    path = write_jsonl(tmp_path / "pc.jsonl", [
        {"prompt": "2+2?", "completion": "4"},
        {"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yo"}]}])
    result = read_records(path)
    assert result.format == "prompt_completion"
    assert result.records[0].messages[1]["content"] == "4"
    assert result.records[1].messages[1] == {"role": "assistant", "content": "yo"}


def test_csv_auto_columns_and_mapping(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text('question,answer,topic\n"How do I, reset?","Press the button",account\n')
    rec = read_records(path).records[0]
    assert rec.messages == [{"role": "user", "content": "How do I, reset?"},
                            {"role": "assistant", "content": "Press the button"}]
    assert rec.meta == {"topic": "account"}
    other = tmp_path / "other.csv"
    other.write_text("ticket,q,a\nT1,where?,here\n")
    with pytest.raises(InputProblem, match="column mapping"):
        read_records(other)
    rec = read_records(other, column_map=parse_column_map("prompt=q,completion=a,id=ticket")).records[0]
    assert rec.id == "T1" and rec.answer == "here"


def test_parquet_and_hf_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict
    rows = [chat("q1", "a1", id="p1"), chat("q2", "a2", id="p2")]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    assert [r.id for r in read_records(tmp_path / "d.parquet").records] == ["p1", "p2"]
    DatasetDict({"train": Dataset.from_list(rows[:1]), "test": Dataset.from_list(rows[1:])}).save_to_disk(
        str(tmp_path / "hf"))
    recs = read_records(tmp_path / "hf").records
    assert {r.id: r.meta["split"] for r in recs} == {"p1": "train", "p2": "test"}


def test_forced_format_overrides_detection(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "p", "completion": "c", "messages": "ignored"}])
    assert read_records(path, format="prompt_completion").records[0].answer == "c"
    with pytest.raises(TuneloopError, match="unknown format"):
        read_records(path, format="yaml")


@pytest.mark.parametrize("content, expected", [
    (b"", "holds no records"),
    (b"\n\n  \n", "holds no records"),
    (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n', "line 1: not valid UTF-8 (byte 0xe9"),
    (b'{"messages": []}\n{oops\n', "line 2: not valid JSON"),
    (b'{"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "a"}]}\n',
     "line 1: messages[0].content is empty"),
    (b'{"messages": [{"role": "user", "content": 42}]}\n', "line 1: messages[0].content must be text, got int"),
    (b'{"messages": "hello"}\n', "line 1: 'messages' must be a list"),
    (b'{"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}\n',
     "line 1: messages[1].role is 'bot'; expected system, user, assistant or tool"),
    (b'{"messages": [{"content": "q"}]}\n', "line 1: messages[0].role is missing"),
    (b'[1, 2]', "item 1: expected a JSON object per record, got int"),
    (b'{"text": "just text"}\n', "cannot tell the format"),
    (b'{"instruction": "x", "output": ""}\n', "line 1: output is empty"),
    (b'{"conversations": [{"from": "robot", "value": "x"}]}\n', "conversations[0].from is 'robot'"),
])
def test_bad_input_names_line_and_field(tmp_path, content, expected):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(TuneloopError) as info:
        read_records(path)
    assert expected in str(info.value)
    assert "bad.jsonl" in str(info.value)


def test_every_problem_is_listed_and_nothing_partial(tmp_path):
    rows = [chat("ok", "fine")] * 1 + [{"messages": [{"role": "user", "content": ""}]}] * 3
    path = write_jsonl(tmp_path / "mixed.jsonl", [rows[0], *rows[1:], chat("dup", "x", id="d"), chat("dup2", "y", id="d")])
    with pytest.raises(InputProblem) as info:
        read_records(path)
    problems = info.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 2", "line 3", "line 4", "line 6"]
    assert "id 'd' repeats line 5" in problems[-1]


def test_no_assistant_turn_is_a_warning(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"messages": [{"role": "user", "content": "only a question"}]}])
    result = read_records(path)
    assert len(result.records) == 1
    assert result.warnings == ["line 1: the conversation has no assistant turn; it cannot teach an answer until one is added"]


def test_size_limit_is_configurable(tmp_path):
    path = write_jsonl(tmp_path / "big.jsonl", [chat("q" * 1000, "a")] * 200)
    with pytest.raises(TuneloopError, match=r"over the import limit of 0.1 MB.*--max-mb"):
        read_records(path, max_mb=0.1)
    assert len(read_records(path, max_mb=1).records) == 200


def test_missing_file(tmp_path):
    with pytest.raises(TuneloopError, match="no such file"):
        read_records(tmp_path / "nope.jsonl")
