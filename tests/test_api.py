"""The automation API through gradio_client against a live app: only the named functions are listed, each
documented with real, typed parameters, and a script can import, split and ask where things stand."""
from __future__ import annotations

import json

import httpx
import pytest
from gradio_client import Client

from core.users import add_user
from core.workspace import Workspace
from tests.browser import start_app
from tests.test_generate import run_folder  # noqa: F401  (a fixture)
from ui.api import ENDPOINTS

NAMES = {f"/{fn.__name__}" for fn in ENDPOINTS}


def chats(n: int) -> str:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"Where is my order LM-{1000 + i}?"},
                                            {"role": "assistant", "content": f"Order LM-{1000 + i} ships today."}],
                               "label": ("shipping", "billing")[i % 2]}) + "\n" for i in range(n))


@pytest.fixture(scope="module")
def local_app(tmp_path_factory):
    app = start_app(tmp_path_factory.mktemp("api") / "workspace", ["--no-demo"])
    yield app
    app.stop()


def test_the_api_lists_only_the_named_functions_each_documented_with_typed_parameters(local_app):
    api = Client(local_app.url, verbose=False).view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == NAMES
    assert not api["unnamed_endpoints"]
    described = httpx.get(local_app.url + "gradio_api/info").json()["named_endpoints"]
    for name, endpoint in api["named_endpoints"].items():
        assert len(described[name]["description"]) > 40, name
        for p in endpoint["parameters"]:
            assert not p["parameter_name"].startswith("param_"), (name, p)
            assert "enum" not in json.dumps(p["type"]), (name, p)     # no choices frozen at start-up
    params = {p["parameter_name"]: p for p in api["named_endpoints"]["/build_split"]["parameters"]}
    assert set(params) == {"version", "options"} and params["version"]["type"]["type"] == "string"


def test_a_script_imports_splits_and_reads_where_things_stand(local_app):
    client = Client(local_app.url, verbose=False)
    made = client.predict(text=chats(40), filename="orders.jsonl", api_name="/import_records")
    assert made["version"] == "v1" and made["records"] == 40 and made["step"] == "import"
    split = client.predict(version="current", options={"test": 0.2, "val": 0.1, "stratify": "label"},
                           api_name="/build_split")
    assert split["parent"] == "v1" and split["step"] == "split" and split["records"] == 40
    versions = client.predict(api_name="/list_versions")
    assert [(v["version"], v["step"]) for v in versions] == [("v1", "import"), (split["version"], "split")]
    assert Workspace.open(local_app.workspace).db.execute(
        "select count(*) from dataset_versions").fetchone()[0] == 2
    with pytest.raises(Exception, match="there is no run yet"):
        client.predict(run="", api_name="/run_status")
    with pytest.raises(Exception, match="'v9'|v9"):
        client.predict(version="v9", options={}, api_name="/build_split")


def test_hosted_the_api_needs_an_admin_and_the_rater_app_has_none(tmp_path):
    ws = Workspace.open(tmp_path / "workspace")
    add_user(ws, "ada", "admin", "admin-pass-Kx81")
    add_user(ws, "rita", "rater", "rater-pass-Jq52")
    app = start_app(ws.root, ["--no-demo"])
    try:
        admin = Client(app.url, auth=("ada", "admin-pass-Kx81"), verbose=False)
        assert set(admin.view_api(return_format="dict", print_info=False)["named_endpoints"]) == NAMES
        assert admin.predict(text=chats(5), filename="a.jsonl", api_name="/import_records")["records"] == 5
        rate = Client(app.url.rstrip("/") + "/rate/", auth=("rita", "rater-pass-Jq52"), verbose=False)
        assert not rate.view_api(return_format="dict", print_info=False)["named_endpoints"]
        with pytest.raises(Exception):
            Client(app.url, auth=("rita", "rater-pass-Jq52"), verbose=False)
    finally:
        app.stop()


def test_deduplicate_and_scrub_make_versions_a_script_can_chain(ws):
    from ui import api

    rows = [{"messages": [{"role": "user", "content": f"Where is order LM-{1000 + i % 5}? Call +1 415 555 0{100 + i}"},
                          {"role": "assistant", "content": f"Order LM-{1000 + i % 5} ships today."}]} for i in range(20)]
    api.import_records(ws, "".join(json.dumps(r) + "\n" for r in rows), "calls.jsonl")
    deduped = api.deduplicate(ws, "current", {})
    assert (deduped["parent"], deduped["step"]) == ("v1", "dedup") and deduped["records"] < 20
    assert deduped["counts"]["removed"] == 20 - deduped["records"]
    scrubbed = api.scrub_pii(ws, deduped["version"])
    assert (scrubbed["parent"], scrubbed["step"]) == ("v2", "scrub")
    assert scrubbed["found"]["PHONE_NUMBER"] == deduped["records"] == scrubbed["counts"]["records_scrubbed"]
    assert [v["current"] for v in api.list_versions(ws)] == [False, False, True]
    with pytest.raises(Exception, match="unknown preset 'nope'"):
        api.launch_training(ws, scrubbed["version"], preset="nope")


def test_import_records_forces_a_schema_maps_columns_and_skips_bad_records(ws):
    from ui import api

    rows = [{"instruction": "Name a gas giant.", "context": "", "response": "Jupiter", "category": "open_qa"},
            {"instruction": "Name a moon of Mars.", "context": "", "response": "", "category": "open_qa"}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    with pytest.raises(Exception, match="line 2"):
        api.import_records(ws, text, "dolly.jsonl", format="dolly")
    made = api.import_records(ws, text, "dolly.jsonl", format="dolly", skip_bad=True)
    assert (made["format"], made["imported"], len(made["skipped"])) == ("dolly", 1, 1)
    assert made["skipped"][0].startswith("line 2:")
    asked = [{"q": "Name a dwarf planet.", "a": "Pluto"}]
    mapped = api.import_records(ws, json.dumps(asked[0]) + "\n", "qa.jsonl", columns="prompt=q,completion=a")
    assert (mapped["format"], mapped["imported"]) == ("prompt_completion", 1)


def test_generate_pairs_takes_any_set_of_arms_and_the_base_model_when_no_run_is_among_them(ws, run_folder):  # noqa: F811
    from core.errors import TuneloopError
    from evaluation.arena import get_evaluation
    from tests.test_generate import finished_run, split_version
    from ui import api
    version = split_version(ws)
    tiny = run_folder.parent / "tiny"
    made = api.generate_pairs(ws, "", version.name, arms=["base", "prompted:1"], base_model=str(tiny),
                              system_prompt="Be brief.", max_new_tokens=3)
    assert made["arms"] == ["base", "prompted base (1 examples)"] and made["pairs"] == 2
    evaluation = get_evaluation(ws, made["evaluation"])
    assert evaluation.base_model == "tiny" and evaluation.settings["base_model"] == str(tiny.resolve())
    run = finished_run(ws, run_folder, version)
    assert api.generate_pairs(ws, str(run.id), version.name, max_prompts=1, max_new_tokens=3)["arms"] == [
        "base", f"run {run.id}"]
    assert get_evaluation(ws, made["evaluation"]).settings["max_new_tokens"] == 3
    with pytest.raises(TuneloopError, match="either the run .* or the arms, not both"):
        api.generate_pairs(ws, str(run.id), version.name, arms=["base", "prompted:1"])
    with pytest.raises(TuneloopError, match="name the run to compare with its base, or the arms"):
        api.generate_pairs(ws, "", version.name)
