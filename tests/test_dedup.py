"""Duplicate removal end to end: clusters, keeper policies, overrides, versions, the CLI, bad input."""
import json

import pytest

from benchmarks.planted_duplicates import planted_dataset
from core.errors import TuneloopError
from curation.dedup.clusters import DedupOptions, apply_dedup, find_duplicates, find_duplicates_in_version, main
from curation.data.records import Record
from curation.data.versions import create_version, get_version, load_records
from tests.conftest import chat, write_jsonl

TEMPLATE = ("Thank you for contacting Lumio support. We answer every message within one business day, "
            "and you can always find our opening hours, the status page and the full help centre in the "
            "app under Settings, Help. Please keep your order number at hand when you write to us again.")


def rec(rid, user, assistant, **meta):
    return Record(id=rid, messages=[{"role": "user", "content": user},
                                    {"role": "assistant", "content": assistant}], meta=meta)


def sample():
    return [
        rec("a", "My parcel never arrived, order 5531. What now?",
            "Sorry about that! I opened a carrier trace for order 5531; you will hear from us within two days."),
        rec("b", "my parcel never arrived,   order 5531 - what now", "SORRY ABOUT THAT! I opened a carrier trace "
            "for order 5531; you will hear from us within two days"),                                  # exact copy
        rec("c", "My parcel never arrived, order 5531. What should I do now?",
            "Sorry about that! I opened a carrier trace for order 5531; you will hear from us in two days."),  # near
        rec("d", "How do I change the Wi-Fi network of my hub?", "Open the app, go to Hub, Network and choose "
            "the new network; the hub restarts once. " + TEMPLATE),
        rec("e", "Can I pay my invoice with PayPal instead of a card?", "Yes, PayPal works for every plan; switch "
            "it in Account, Billing, Payment method. " + TEMPLATE),                                 # hard negative
        rec("f", "What does error E-3307 mean on the doorbell camera?", "A firmware download was interrupted; "
            "unplug the camera for ten seconds and it retries on its own."),
    ]


def test_exact_and_near_duplicates_cluster_under_their_keeper():
    result = find_duplicates(sample())
    assert len(result.clusters) == 1
    cluster = result.clusters[0]
    assert cluster.keeper == "a" and cluster.kind == "near"
    by_id = {m.id: m for m in cluster.members}
    assert set(by_id) == {"a", "b", "c"}
    assert by_id["b"].exact and by_id["b"].similarity == 1.0
    assert not by_id["c"].exact and result.options.threshold <= by_id["c"].similarity < 1.0
    assert result.drop_ids() == {"b", "c"}
    counts = result.counts()
    assert counts["exact_duplicates"] == 1 and counts["near_duplicate_clusters"] == 1 and counts["to_drop"] == 2


def test_records_sharing_only_a_template_never_merge():
    records = sample()
    result = find_duplicates(records, DedupOptions(threshold=0.3))
    assert not {"d", "e"} & result.drop_ids()


def test_keeper_policies():
    records = sample()
    records[2].meta["created_at"] = "2024-05-02T10:00:00Z"
    records[0].meta["created_at"] = "2024-05-01T09:00:00Z"
    assert find_duplicates(records, DedupOptions(keep="longest")).clusters[0].keeper == "c"
    assert find_duplicates(records, DedupOptions(keep="recent")).clusters[0].keeper == "c"
    records[1].meta["quality"] = 0.99
    assert find_duplicates(records, DedupOptions(keep="quality")).clusters[0].keeper == "b"


def test_text_mode_decides_what_is_compared():
    records = [rec("q1", "How do I reset my password on the app?", "Tap Sign in, then Forgot password."),
               rec("q2", "How do I reset my password on the app?", "Our team will call you back tomorrow morning.")]
    assert find_duplicates(records).clusters == []
    assert find_duplicates(records, DedupOptions(text="user")).drop_ids() == {"q2"}
    assert find_duplicates(records, DedupOptions(text="assistant")).clusters == []


def test_overrides_and_apply_make_a_new_version(ws):
    v1 = create_version(ws, sample(), parent=None, step="import")
    result = find_duplicates_in_version(ws, options=DedupOptions(keep="first"))
    assert result.version_id == v1.id
    v2 = apply_dedup(ws, result, overrides={"c": "keep", "f": "drop"})
    assert [r.id for r in load_records(ws, v2.id)] == ["a", "c", "d", "e"]
    version = get_version(ws, v2.id)
    assert version.parent_id == v1.id and version.step == "dedup"
    assert version.counts["removed"] == 2 and version.counts["exact_removed"] == 1
    assert version.params["overrides"] == {"c": "keep", "f": "drop"} and version.params["threshold"] == 0.6
    with pytest.raises(TuneloopError, match="unknown record"):
        apply_dedup(ws, result, overrides={"zzz": "keep"})
    with pytest.raises(TuneloopError, match="'keep' or 'drop'"):
        apply_dedup(ws, result, overrides={"a": "maybe"})


def test_bad_options_are_explained():
    for bad in (DedupOptions(threshold=0), DedupOptions(threshold=1.5), DedupOptions(text="system"),
                DedupOptions(keep="random"), DedupOptions(num_perm=2), DedupOptions(ngram=0)):
        with pytest.raises(TuneloopError):
            find_duplicates(sample(), bad)


def test_empty_and_missing_answers_are_not_duplicates_of_each_other():
    records = [Record(id="x", messages=[{"role": "user", "content": ""}]),
               Record(id="y", messages=[{"role": "user", "content": "  "}]),
               Record(id="z", messages=[])]
    assert find_duplicates(records).clusters == []


def test_planted_set_meets_quality_targets():
    planted = planted_dataset(3000, seed=7)
    result = find_duplicates(planted.records)
    truth = planted.true_pairs()
    found = {tuple(sorted((a.id, b.id))) for c in result.clusters for a in c.members for b in c.members if a.id < b.id}
    assert len(found & truth) / len(truth) >= 0.97
    assert len(found & truth) / len(found) >= 0.99
    assert not result.drop_ids() & planted.hard_negatives


def test_cli_writes_kept_records_and_clusters(tmp_path, capsys):
    rows = [r.to_dict() for r in sample()]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out, clusters = tmp_path / "out.jsonl", tmp_path / "clusters.jsonl"
    assert main([str(source), str(out), "--clusters", str(clusters), "--keep", "longest"]) == 0
    kept = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert kept == ["c", "d", "e", "f"]
    [cluster] = [json.loads(line) for line in clusters.read_text().splitlines()]
    assert cluster["keeper"] == "c"
    assert {m["id"]: m["keep"] for m in cluster["members"]} == {"c": True, "a": False, "b": False}
    assert "dropped 2" in capsys.readouterr().out


def test_cli_reports_bad_input(tmp_path, capsys):
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps(chat("hi", "hello")) + "\n{not json\n")
    assert main([str(source), str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and not (tmp_path / "out.jsonl").exists()
    assert main([str(tmp_path / "missing.jsonl"), str(tmp_path / "out.jsonl")]) == 2
    assert main([str(source), str(tmp_path / "out.jsonl"), "--threshold", "7"]) == 2


def test_a_run_can_be_cancelled_and_reports_progress():
    from curation.dedup.clusters import Cancelled
    seen = []
    find_duplicates(sample(), progress=lambda f, text: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Cancelled):
        find_duplicates(sample(), cancel=lambda: len(seen) > 0)


def test_cli_deduplicates_a_workspace_version_as_the_tab_does(ws, tmp_path, capsys):
    from curation.data.versions import create_version, current_version, load_records
    source = create_version(ws, sample(), parent=None, step="import")
    options = tmp_path / "dedup.yaml"
    DedupOptions(keep="longest", threshold=0.5).save(options)
    assert main(["current", "--workspace", str(ws.root), "--options", str(options), "--threshold", "0.6"]) == 0
    made = current_version(ws)
    assert made.step == "dedup" and made.parent_id == source.id
    assert made.params == {**DedupOptions(keep="longest").to_dict(), "overrides": {}}
    assert [r.id for r in load_records(ws, made.id)] == ["c", "d", "e", "f"]
    assert f"as {made.describe()}" in capsys.readouterr().out
    by_tab = apply_dedup(ws, find_duplicates_in_version(ws, source.id, DedupOptions(keep="longest")))
    assert by_tab.content_hash == made.content_hash and by_tab.counts == made.counts
    with pytest.raises(SystemExit):
        main([source.name, "--workspace", str(ws.root), "--keep", "random"])
    assert "invalid choice: 'random'" in capsys.readouterr().err
    assert main(["v9", "--workspace", str(ws.root)]) == 2
    assert "there is no version v9" in capsys.readouterr().err
    assert main([source.name, "--workspace", str(ws.root), "--num-perm", "8"]) == 2
    assert "num_perm: 8 is too small; it must be at least 16" in capsys.readouterr().err
    assert main([source.name, "--workspace", str(ws.root), "--threshold", "0"]) == 2
    assert "threshold: must be above 0" in capsys.readouterr().err
