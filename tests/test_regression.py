"""Regression suites: each check kind on real answers, storage in the workspace, a run on a tiny model."""
from __future__ import annotations

import json

import pytest

from core.errors import InputProblem, TuneloopError
from evaluation.regression import (Case, add_case, check_problems, check_response, create_suite, evaluate_case,
                                   get_suite, import_suite, latest_results, list_suites, main, remove_case,
                                   run_suite)
from tests.tiny_model import build_tiny_model

ANSWER = "Thanks! Order LM-4471 left our warehouse. Track it from Account > Orders."


def test_contains_and_not_contains_ignore_case_unless_asked():
    assert check_response(ANSWER, {"kind": "contains", "value": "account > orders"}) is None
    assert check_response(ANSWER, {"kind": "contains", "value": "account > orders", "case_sensitive": True}) \
        == "does not contain 'account > orders'"
    assert check_response(ANSWER, {"kind": "contains", "value": "refund"}) == "does not contain 'refund'"
    assert check_response(ANSWER, {"kind": "not_contains", "value": "I don't know"}) is None
    assert check_response(ANSWER, {"kind": "not_contains", "value": "WAREHOUSE"}) \
        == "contains 'WAREHOUSE', which it must not"


def test_regex_searches_anywhere():
    assert check_response(ANSWER, {"kind": "regex", "pattern": r"LM-\d{4}"}) is None
    assert check_response(ANSWER, {"kind": "regex", "pattern": r"^Order"}) == "does not match /^Order/"
    assert check_response(ANSWER, {"kind": "regex", "pattern": r"(?i)^thanks"}) is None


SCHEMA = {"type": "object", "required": ["intent", "order"],
          "properties": {"intent": {"enum": ["order_status", "refund"]}, "order": {"type": "string"}}}


def test_json_schema_checks_parse_and_shape():
    ok = '{"intent": "refund", "order": "LM-1"}'
    assert check_response(ok, {"kind": "json_schema", "schema": SCHEMA}) is None
    assert check_response(f"```json\n{ok}\n```", {"kind": "json_schema", "schema": SCHEMA}) is None
    assert check_response("[1, 2]", {"kind": "json_schema", "schema": {}}) is None
    bad_json = check_response("intent: refund", {"kind": "json_schema", "schema": {}})
    assert bad_json.startswith("is not valid JSON")
    wrong = check_response('{"intent": "hello", "order": "LM-1"}', {"kind": "json_schema", "schema": SCHEMA})
    assert wrong.startswith("JSON does not fit the schema at intent:") and "'hello' is not one of" in wrong
    missing = check_response('{"intent": "refund"}', {"kind": "json_schema", "schema": SCHEMA})
    assert "'order' is a required property" in missing


def test_check_problems_name_what_is_wrong():
    assert check_problems({"kind": "contains", "value": "x"}) == []
    assert check_problems({"kind": "shout"}) == ["kind 'shout' is not one of contains, not_contains, regex, json_schema"]
    assert check_problems({"kind": "contains"}) == ["contains needs a non-empty text 'value'"]
    assert check_problems({"kind": "regex", "pattern": "(unclosed"})[0].startswith("regex pattern '(unclosed' does not")
    assert check_problems({"kind": "json_schema", "schema": {"type": "nonsense"}})[0].startswith(
        "the JSON schema is invalid")


def test_evaluate_case_lists_every_failed_check():
    case = Case(1, 1, "order", [{"role": "user", "content": "Where is my order?"}],
                [{"kind": "contains", "value": "Account > Orders"}, {"kind": "contains", "value": "refund"},
                 {"kind": "not_contains", "value": "left"}])
    result = evaluate_case(case, ANSWER)
    assert not result.passed
    assert result.failures == ["does not contain 'refund'", "contains 'left', which it must not"]


def test_suites_and_cases_are_stored_and_validated(ws):
    sid = create_suite(ws, "house rules", "what every answer must do")
    add_case(ws, sid, "Where is my order?", [{"kind": "contains", "value": "Account > Orders"}], name="order")
    add_case(ws, "house rules", [{"role": "system", "content": "Answer in JSON."},
                                 {"role": "user", "content": "Classify: refund please"}],
             [{"kind": "json_schema", "schema": SCHEMA}])
    suite = get_suite(ws, sid)
    assert [c.name for c in suite.cases] == ["order", "Classify: refund please"]
    assert suite.cases[1].messages[0]["role"] == "system" and suite.cases[1].checks[0]["schema"] == SCHEMA
    with pytest.raises(TuneloopError, match="already a regression suite"):
        create_suite(ws, "house rules")
    with pytest.raises(InputProblem, match="check 1: kind 'bad'"):
        add_case(ws, sid, "x", [{"kind": "bad"}])
    with pytest.raises(TuneloopError, match="at least one check"):
        add_case(ws, sid, "x", [])
    with pytest.raises(TuneloopError, match="no regression suite 'nope'"):
        get_suite(ws, "nope")
    remove_case(ws, suite.cases[0].id)
    assert [c.name for c in get_suite(ws, sid).cases] == ["Classify: refund please"]


def test_import_writes_nothing_when_a_case_is_invalid(ws, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: rules\ncases:\n  - prompt: hi\n    checks: [{kind: contains, value: hello}]\n"
                   "  - prompt: ''\n    checks: [{kind: regex, pattern: '('}]\n")
    with pytest.raises(InputProblem) as err:
        import_suite(ws, bad)
    assert "case 2: a regression case needs a prompt" in str(err.value)
    assert list_suites(ws) == []
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"name": "rules", "cases": [
        {"name": "greets", "prompt": "hi", "checks": [{"kind": "contains", "value": "hello"}]}]}))
    suite = import_suite(ws, good)
    assert suite.name == "rules" and [c.name for c in suite.cases] == ["greets"]


@pytest.fixture(scope="module")
def adapter_folder(tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    root = tmp_path_factory.mktemp("regression")
    base = build_tiny_model(root / "tiny")
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(root / "adapter")
    return root / "adapter"


def test_run_suite_answers_with_base_and_adapter_and_stores_both(ws, adapter_folder, tmp_path, capsys):
    from evaluation.generate import DecodingSettings, PromptItem, generate_pairs, resolve_adapter
    sid = create_suite(ws, "smoke")
    add_case(ws, sid, "Where is my order?", [{"kind": "regex", "pattern": r"[\s\S]*"}], name="anything goes")
    add_case(ws, sid, "Can I get a refund?", [{"kind": "contains", "value": "zebra-unicorn"}], name="impossible")
    settings = DecodingSettings(max_new_tokens=5)
    results = run_suite(ws, sid, run=str(adapter_folder), settings=settings)
    assert set(results) == {"base", "finetuned"}
    for model, result in results.items():
        assert (result.passed, result.total) == (1, 2)
        assert result.results[1].failures == ["does not contain 'zebra-unicorn'"]
    models = resolve_adapter(ws, str(adapter_folder))
    suite = get_suite(ws, sid)
    expected = generate_pairs(ws, [PromptItem(f"regression-{c.id}", c.messages) for c in suite.cases],
                              base_model=models.base_model, adapter=models.adapter, settings=settings)
    assert [r.response for r in results["base"].results] == [b for b, _ in expected]
    assert [r.response for r in results["finetuned"].results] == [t for _, t in expected]
    stored = latest_results(ws, None)
    assert [(s.suite, s.passed, s.total) for s in stored] == [("smoke", 1, 2)]
    assert stored[0].results[1].failures == ["does not contain 'zebra-unicorn'"]
    assert main(["--workspace", str(ws.root), "run", "smoke", "--run", str(adapter_folder),
                 "--max-new-tokens", "5"]) == 0
    out = capsys.readouterr().out
    assert "smoke · base: 1/2 cases pass" in out and "FAIL impossible: does not contain 'zebra-unicorn'" in out
