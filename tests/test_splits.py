"""Split builder: sizes, seeds, groups never crossing, label shares, leakage-free results, export, CLI."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from core.errors import TuneloopError
from curation.data.export import export_name
from curation.data.records import SPLITS, Record
from curation.splits.balance import balance_report, groups_across_splits, length_histogram, max_share_gap
from curation.splits.build import SplitOptions, build_splits, make_split, save_split_version, split_version
from curation.splits.cli import main
from curation.splits.export import export_split, training_row
from curation.splits.targets import split_sizes, split_targets
from tests.conftest import write_jsonl

LABELS = ["billing", "refund", "login", "shipping", "setup", "warranty", "cancel", "upgrade"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(2, 4)))


def support_tickets(n: int = 1000, seed: int = 0, *, popular: int = 12, askers: int = 8,
                    shared_logs: int = 5) -> list[Record]:
    """Support tickets from customers with 1-6 tickets each, labels of uneven size, and leaks planted
    across customers: ``popular`` questions each asked by ``askers`` different customers (verbatim or
    with a typo), and ``shared_logs`` pairs of tickets quoting the same 15-word error log."""
    rng = random.Random(seed)
    vocab = sorted({_word(rng) for _ in range(3000)})
    weights = [3, 2, 2, 1.5, 1.2, 1, 0.8, 0.5]
    records: list[Record] = []
    customer = 0

    def sentence(k: int) -> str:
        return " ".join(rng.choice(vocab) for _ in range(k))

    def add(question: str, label: str, who: str) -> None:
        answer = f"{sentence(rng.randint(12, 30))}."
        records.append(Record(id=f"t{len(records):05d}", messages=[{"role": "user", "content": question},
                                                                    {"role": "assistant", "content": answer}],
                              meta={"label": label, "customer": who}))

    for _ in range(popular):
        question, label = f"How do I {sentence(8)} with my {sentence(3)}?", rng.choices(LABELS, weights)[0]
        for k in range(askers):
            text = question if k % 2 == 0 else question.replace("How do I", "how do i", 1) + " thanks"
            add(text, label, f"C{customer:05d}")
            customer += 1
    for _ in range(shared_logs):
        log = f"ERROR {sentence(15)}"
        for _ in range(2):
            add(f"{sentence(rng.randint(6, 12))}. The app says: {log}", rng.choices(LABELS, weights)[0],
                f"C{customer:05d}")
            customer += 1
    while len(records) < n:
        who = f"C{customer:05d}"
        customer += 1
        for _ in range(min(rng.choice([1, 1, 1, 2, 2, 3, 4, 6]), n - len(records))):
            add(f"{sentence(rng.randint(6, 20))}?", rng.choices(LABELS, weights)[0], who)
    rng.shuffle(records)
    return records


def _shares_ok(records, field="label") -> bool:
    return max_share_gap(records, field) <= 2.0


# -- sizes and seeds ------------------------------------------------------------------------------

def test_split_sizes_take_ratios_or_counts():
    assert split_sizes(1000, 0.1, 0.1) == {"train": 800, "val": 100, "test": 100}
    assert split_sizes(1000, 150, 0.05) == {"train": 800, "val": 150, "test": 50}
    assert split_sizes(10, 0, 2) == {"train": 8, "val": 0, "test": 2}
    with pytest.raises(TuneloopError, match="leave no records"):
        split_sizes(10, 5, 5)
    with pytest.raises(TuneloopError, match="neither a ratio"):
        split_sizes(100, 2.5, 0.1)


def test_targets_are_whole_numbers_that_add_up():
    targets = split_targets({"a": 7, "b": 13, "c": 1}, {"train": 15, "val": 3, "test": 3})
    assert {s: sum(t.values()) for s, t in targets.items()} == {"train": 15, "val": 3, "test": 3}
    assert {lab: sum(targets[s][lab] for s in targets) for lab in "abc"} == {"a": 7, "b": 13, "c": 1}


def test_random_split_has_exact_sizes_and_same_seed_same_split():
    records = support_tickets(400, seed=1)
    a = build_splits(records, SplitOptions(val=0.1, test=60, seed=3))
    b = build_splits(records, SplitOptions(val=0.1, test=60, seed=3))
    c = build_splits(records, SplitOptions(val=0.1, test=60, seed=4))
    assert Counter(r.split for r in a) == {"train": 300, "val": 40, "test": 60}
    assert [r.split for r in a] == [r.split for r in b]
    assert [r.split for r in a] != [r.split for r in c]
    assert [r.id for r in a] == [r.id for r in records]
    assert all(r.meta == {**o.meta, "split": r.split} and r.messages == o.messages for r, o in zip(a, records))
    assert all("split" not in o.meta for o in records)  # the input is not changed


@pytest.mark.parametrize("seed", range(6))
def test_no_group_crosses_splits_on_any_input(seed):
    rng = random.Random(seed)
    records = support_tickets(rng.randint(150, 600), seed=seed)
    # Make one customer huge and leave some records without a customer at all.
    for r in records[:rng.randint(5, 60)]:
        r.meta["customer"] = "BIG"
    for r in records[-10:]:
        r.meta.pop("customer")
    config = SplitOptions(val=rng.choice([0.1, 0.15, 25]), test=rng.choice([0.1, 0.2, 30]), group="customer",
                         stratify=rng.choice([None, "label"]), seed=seed)
    out = build_splits(records, config)
    assert groups_across_splits(out, "customer") == {}
    assert len(out) == len(records) and all(r.split in SPLITS for r in out)


@pytest.mark.parametrize("seed", range(5))
def test_stratified_shares_stay_within_two_points(seed):
    records = support_tickets(1000, seed=seed)
    alone = build_splits(records, SplitOptions(stratify="label", seed=seed))
    assert _shares_ok(alone)
    grouped = build_splits(records, SplitOptions(val=0.1, test=0.15, stratify="label", group="customer", seed=seed))
    assert _shares_ok(grouped)
    assert groups_across_splits(grouped, "customer") == {}


def test_labels_are_read_from_meta_or_top_level_fields():
    records = support_tickets(200, seed=2)
    out = build_splits(records, SplitOptions(stratify="label", group="id", seed=1))
    assert Counter(r.split for r in out) == {"train": 160, "val": 20, "test": 20}
    with pytest.raises(TuneloopError, match="no record has the field 'intent'"):
        build_splits(records, SplitOptions(stratify="intent"))


def test_cap_per_label_rebalances():
    records = support_tickets(600, seed=3)
    out = build_splits(records, SplitOptions(stratify="label", max_per_label=50, seed=1))
    counts = Counter(r.meta["label"] for r in out)
    assert max(counts.values()) == 50
    assert len(out) == sum(min(50, k) for k in Counter(r.meta["label"] for r in records).values())
    with pytest.raises(TuneloopError, match="needs a label field"):
        build_splits(records, SplitOptions(max_per_label=50))


# -- the whole step: split, audit, fix (acceptance) -------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_with_fix_meets_every_acceptance_check(seed):
    """Same questions asked by different customers: grouping alone leaks; the fix must not."""
    records = support_tickets(1000, seed=seed)
    config = SplitOptions(val=0.1, test=0.1, stratify="label", group="customer", seed=seed)
    leaky = build_splits(records, config)
    result = make_split(records, config.replace(fix="move"))
    assert result.leakage["before"]["num_pairs"] > 0          # the planted leaks were there
    assert result.leakage["after"]["clean"] is True           # no near dup at the threshold, no 13-gram overlap
    assert groups_across_splits(result.records, "customer") == {}
    assert _shares_ok(result.records)
    assert result.dropped == [] and len(result.records) == len(records)
    before, after = Counter(r.split for r in leaky), Counter(r.split for r in result.records)
    assert all(abs(after[s] - before[s]) <= 5 for s in SPLITS)   # sizes kept (whole groups allow a few off)
    # Every planted popular question now lives in one split only.
    by_question: dict[str, set] = {}
    for r in result.records:
        by_question.setdefault(r.prompt.lower().removesuffix(" thanks"), set()).add(r.split)
    assert all(len(s) == 1 for s in by_question.values())


def test_drop_fix_drops_at_most_three_percent():
    records = support_tickets(1000, seed=5)
    result = make_split(records, SplitOptions(stratify="label", group="customer", seed=5, fix="drop"))
    assert 0 < len(result.dropped) <= 0.03 * len(records)
    assert result.leakage["after"]["clean"] is True
    assert {r.id for r in result.records}.isdisjoint(result.dropped)
    assert groups_across_splits(result.records, "customer") == {}


def test_fix_none_only_reports():
    records = support_tickets(500, seed=6)
    result = make_split(records, SplitOptions(group="customer", seed=6, fix="none"))
    assert result.leakage["after"]["num_pairs"] == result.leakage["before"]["num_pairs"] > 0
    assert result.moved == [] and result.dropped == []


# -- balance, freeze, export, CLI ------------------------------------------------------------------

def test_balance_report_counts_shares_and_lengths():
    records = build_splits(support_tickets(500, seed=7), SplitOptions(stratify="label", seed=7))
    report = balance_report(records, "label")
    assert report.sizes == {"train": 400, "val": 50, "test": 50}
    assert sum(report.counts["billing"].values()) == sum(r.meta["label"] == "billing" for r in records)
    assert report.max_gap <= 2.0
    rows = report.count_rows()
    assert rows[0][0] == "billing" and rows[0][1] == report.counts["billing"]["train"]
    assert report.lengths["test"]["answer"]["median"] > 10
    hist = length_histogram(records, "prompt", bins=10)
    for s in SPLITS:
        assert abs(sum(row["share"] for row in hist if row["split"] == s) - 100) < 0.5


def test_split_is_saved_as_an_immutable_version(ws):
    from curation.data.versions import create_version, get_version, load_records
    records = support_tickets(300, seed=8)
    parent = create_version(ws, records, parent=None, step="import")
    result = make_split(records, SplitOptions(stratify="label", group="customer", seed=8))
    version = save_split_version(ws, result, parent=parent.id)
    again = get_version(ws, version.id)
    assert again.step == "split" and again.parent_id == parent.id
    assert again.params["group"] == "customer" and again.params["fix"] == "move"
    assert again.counts["train"] + again.counts["val"] + again.counts["test"] == 300
    assert len(again.content_hash) == 64
    loaded = load_records(ws, version.id)
    assert Counter(r.split for r in loaded) == Counter(r.split for r in result.records)


def test_export_writes_every_format_in_shapes_trl_reads(tmp_path):
    from datasets import load_dataset, load_from_disk
    from trl.data_utils import is_conversational

    records = build_splits(support_tickets(120, seed=9), SplitOptions(seed=9))
    written = export_split(records, tmp_path / "msg", formats=("jsonl", "parquet", "hf"))
    assert {p.name for p in written} == {"train.jsonl", "validation.jsonl", "test.jsonl", "train.parquet",
                                         "validation.parquet", "test.parquet", "hf"}
    dd = load_from_disk(str(tmp_path / "msg" / "hf"))
    assert set(dd) == {"train", "validation", "test"} and dd["test"].num_rows == 12
    assert is_conversational(dd["train"][0])
    assert dd["train"][0]["meta"]["split"] == "train"
    parquet = load_dataset("parquet", data_files={"val": str(tmp_path / "msg" / "validation.parquet")})["val"]
    assert parquet.num_rows == 12 and is_conversational(parquet[0])
    first = json.loads((tmp_path / "msg" / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"id", "messages", "meta"} and first["meta"]["split"] == "train"

    export_split(records, tmp_path / "pc", formats=("jsonl",), shape="prompt_completion")
    pc = load_dataset("json", data_files=str(tmp_path / "pc" / "test.jsonl"))["train"]
    assert is_conversational(pc[0]) and pc[0]["completion"][0]["role"] == "assistant"
    assert pc[0]["prompt"][-1]["role"] == "user"

    row = training_row(records[0], "input_label", label_field="label")
    assert row["input"] == records[0].prompt and row["label"] == records[0].meta["label"]
    assert training_row(records[0], "input_label")["label"] == records[0].answer


def test_cli_writes_splits_and_leakage_report(tmp_path, capsys):
    source = write_jsonl(tmp_path / "tickets.jsonl", [r.to_dict() for r in support_tickets(400, seed=10)])
    out = tmp_path / "out"
    code = main([str(source), str(out), "--val", "0.1", "--test", "40", "--stratify", "label", "--group", "customer",
                 "--seed", "3", "--leakage-threshold", "0.6", "--fix", "move"])
    assert code == 0
    rows = {s: [json.loads(line) for line in (out / f"{export_name(s)}.jsonl").read_text().splitlines()]
            for s in SPLITS}
    sizes = [len(rows[s]) for s in SPLITS]
    assert sum(sizes) == 400 and all(abs(k - want) <= 3 for k, want in zip(sizes, [320, 40, 40]))
    originals = {r["id"]: r for r in (json.loads(line) for line in source.read_text().splitlines())}
    for s, part in rows.items():
        for row in part:
            assert row["meta"] == {**originals[row["id"]]["meta"], "split": s}
    report = json.loads((out / "leakage.json").read_text())
    assert report["after"]["clean"] and report["after"]["options"]["threshold"] == 0.6
    assert report["before"]["num_pairs"] > 0 and report["options"]["group"] == "customer"
    assert f"train {sizes[0]} · val {sizes[1]} · test {sizes[2]}" in capsys.readouterr().out
    assert main([str(source), str(out), "--stratify", "nope"]) == 2
    assert "no record has the field 'nope'" in capsys.readouterr().err


def test_cli_splits_a_workspace_version(ws, tmp_path, capsys):
    from curation.data.versions import create_version, current_version
    parent = create_version(ws, support_tickets(200, seed=11), parent=None, step="import")
    assert main([parent.name, str(tmp_path / "o"), "--workspace", str(ws.root), "--group", "customer"]) == 0
    current = current_version(ws)
    assert current.step == "split" and current.parent_id == parent.id
    assert current.params == SplitOptions(stratify="label", group="customer").to_dict()   # its label field
    assert (tmp_path / "o" / "test.jsonl").exists()
    # "current", no OUTDIR, options from a YAML file with a flag on top: a new version, nothing written.
    options = tmp_path / "split.yaml"
    SplitOptions(stratify="label", seed=4, fix="drop").save(options)
    assert main(["current", "--workspace", str(ws.root), "--options", str(options), "--seed", "5"]) == 0
    again = current_version(ws)
    assert again.parent_id == current.id and again.params["stratify"] == "label"
    assert again.params["seed"] == 5 and again.params["fix"] == "drop"
    assert f"saved {again.name}" in capsys.readouterr().out
    # The tab's function makes the same version from the same options.
    _, made = split_version(ws, current.id, SplitOptions(stratify="label", seed=5, fix="drop"))
    assert made.content_hash == again.content_hash and made.params == again.params


def test_cli_names_what_is_wrong(ws, tmp_path, capsys):
    from curation.data.versions import create_version, list_versions
    create_version(ws, support_tickets(60, seed=2), parent=None, step="import")
    assert main(["v9", "--workspace", str(ws.root)]) == 2
    assert "there is no version v9" in capsys.readouterr().err
    assert main(["current", "--workspace", str(ws.root), "--leakage-threshold", "2"]) == 2
    assert "leakage_threshold: 2.0 is too large" in capsys.readouterr().err
    assert main(["current", "--workspace", str(ws.root), "--val", "2.5"]) == 2
    assert "val: 2.5 is neither a ratio below 1 nor a whole number" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("groop: customer\n")
    assert main(["current", "--workspace", str(ws.root), "--options", str(tmp_path / "bad.yaml")]) == 2
    assert "groop: not a key of the split options" in capsys.readouterr().err
    assert main(["current", "--workspace", str(tmp_path / "nowhere")]) == 2
    assert "there is no workspace at" in capsys.readouterr().err
    source = write_jsonl(tmp_path / "t.jsonl", [r.to_dict() for r in support_tickets(40, seed=3)])
    assert main([str(source)]) == 2
    assert "INPUT is a file, so give OUTPUT too" in capsys.readouterr().err
    assert len(list_versions(ws)) == 1


def test_templated_data_gets_an_honest_warning_instead_of_balanced_shares():
    from curation.data.demo import demo_records
    # The demo's customers ask a few template questions: grouping plus the fix ties most records together.
    result = make_split(demo_records(600), SplitOptions(stratify="label", group="customer_id"))
    assert result.after.clean and groups_across_splits(result.records, "customer_id") == {}
    assert result.largest_unit > 300
    assert "tied together" in result.balance_warning()
    plain = make_split(demo_records(600), SplitOptions(stratify="label"))
    assert plain.after.clean and plain.balance_warning() == ""


def test_cli_audits_and_fixes_data_that_came_split(tmp_path):
    records = build_splits(support_tickets(300, seed=12, popular=2, askers=4, shared_logs=1), SplitOptions(seed=12))
    source = write_jsonl(tmp_path / "split.jsonl", [r.to_dict() for r in records])
    out = tmp_path / "fixed"
    assert main([str(source), str(out), "--keep-splits", "--group", "customer", "--fix", "drop"]) == 0
    report = json.loads((out / "leakage.json").read_text())
    assert report["before"]["num_pairs"] > 0 and report["after"]["clean"]
    kept = {json.loads(line)["id"]: s for s in SPLITS
            for line in (out / f"{export_name(s)}.jsonl").read_text().splitlines()}
    assert all(kept[r.id] == r.split for r in records if r.id in kept)   # nothing re-split
    assert len(kept) == 300 - len(report["dropped"]) and 0 < len(report["dropped"]) <= 9
    unsplit = write_jsonl(tmp_path / "raw.jsonl", [r.to_dict() for r in support_tickets(50, seed=1)])
    assert main([str(unsplit), str(tmp_path / "x"), "--keep-splits"]) == 2
