"""Quality filters: each filter on records that should and should not fail it, versions, the CLI."""
import json

import pytest

from core.errors import TuneloopError
from curation.dedup.filters import (FilterOptions, apply_filters, check_record, filter_records, filter_version,
                              garbage_share, guess_language, main, quality_score, repeated_ngram_share)
from curation.data.records import Record
from curation.data.versions import create_version, get_version, load_records
from tests.conftest import write_jsonl

GOOD = "You can change it in Account, Billing; the new card is used from the next invoice on."


def rec(rid, *turns, **meta):
    roles = ["user", "assistant"] * len(turns)
    return Record(id=rid, messages=[{"role": role, "content": text} for role, text in zip(roles, turns)], meta=meta)


def test_a_good_record_passes_everything():
    assert check_record(rec("ok", "How do I change my card?", GOOD)) == []


@pytest.mark.parametrize("record, reason", [
    (rec("e", "How do I change my card?", "   "), "empty_answer"),
    (Record(id="n", messages=[{"role": "user", "content": "Hello?"}]), "empty_answer"),
    (rec("s", "How do I change my card?", "OK"), "short_answer"),
    (rec("l", "Tell me everything", "word " * 2100), "long_answer"),
    (rec("r", "Why?", "the hub is offline " * 12), "repetitive"),
    (rec("g", "Status?", "ÃƒÂ©Ã¢â‚¬â„¢ â–ˆâ–ˆâ–ˆ ¤¤¤ ◊◊◊ ▒▒▒ ░░░ " * 3), "garbage"),
    (rec("u", "How do I change my card?", GOOD, "Thanks! And the address?"), "no_final_answer"),
    (rec("x", "How do I change my card? It is not working and I need it for the plan.",
         "Sie können die Karte unter Konto und Abrechnung ändern, die neue Karte wird ab der nächsten Rechnung "
         "verwendet und ist dann sofort aktiv."), "language_mismatch"),
])
def test_each_filter_flags_its_case(record, reason):
    assert reason in check_record(record)


def test_measurements():
    assert repeated_ngram_share("a b c " * 10) > 0.8
    assert repeated_ngram_share("too short to judge") == 0.0
    assert garbage_share("Price: $4.99 (incl. VAT) — 100% fine!") == 0.0
    assert garbage_share("") == 0.0
    assert guess_language("Where is my parcel? It has not arrived and the tracking is empty.") == "en"
    assert guess_language("Wo ist mein Paket? Es ist nicht angekommen und die Sendung ist leer.") == "de"
    assert guess_language("Где моя посылка?") == "ru"
    assert guess_language("12345") is None


def test_skip_and_limits():
    short = rec("s", "Card?", "Done.")
    assert check_record(short, FilterOptions(min_answer_words=2)) == ["short_answer"]
    assert check_record(short, FilterOptions(skip=("short_answer",))) == []
    assert check_record(short, FilterOptions(min_answer_words=1)) == []
    for bad in (FilterOptions(skip=("nope",)), FilterOptions(max_repeated_ngrams=2), FilterOptions(max_answer_words=0)):
        with pytest.raises(TuneloopError):
            filter_records([short], bad)


def test_quality_score_prefers_substantial_clean_answers():
    good = rec("g", "How do I change my card?", GOOD)
    thin = rec("t", "How do I change my card?", "Billing.")
    broken = rec("b", "How do I change my card?", "")
    assert quality_score(good) > quality_score(thin) > quality_score(broken)
    assert quality_score(rec("m", "q", "a", quality=0.42)) == 0.42


def test_report_counts_examples_and_apply(ws):
    records = [rec("ok", "How do I change my card?", GOOD), rec("e", "Hello?", ""),
               rec("s", "Card?", "OK"), rec("s2", "How do I pay later?", "Yes")]
    v1 = create_version(ws, records, parent=None, step="import")
    report = filter_version(ws)
    assert report.counts["empty_answer"] == 1 and report.counts["short_answer"] == 2
    assert report.examples["short_answer"] == ["s", "s2"] and report.flagged["e"] == ["empty_answer"]
    v2 = apply_filters(ws, report, only=["short_answer"])
    assert [r.id for r in load_records(ws, v2.id)] == ["ok", "e"]
    version = get_version(ws, v2.id)
    assert version.parent_id == v1.id and version.step == "filter"
    assert version.counts == {"records": 2, "removed": 2, "short_answer": 2}
    v3 = apply_filters(ws, report)
    assert [r.id for r in load_records(ws, v3.id)] == ["ok"]
    with pytest.raises(TuneloopError, match="unknown filter"):
        apply_filters(ws, report, only=["spelling"])


def test_cli(tmp_path, capsys):
    rows = [r.to_dict() for r in (rec("ok", "How do I change my card?", GOOD), rec("e", "Hello?"))]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out, report = tmp_path / "out.jsonl", tmp_path / "flagged.jsonl"
    assert main([str(source), str(out), "--report", str(report)]) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["ok"]
    assert json.loads(report.read_text()) == {
        "id": "e", "failed": ["empty_answer", "no_final_answer"],
        "why": {"empty_answer": "no assistant turn", "no_final_answer": "the conversation ends with a user turn"}}
    assert "1 of 2 records flagged" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.jsonl"), str(out)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_filters_a_workspace_version_as_the_tab_does(ws, capsys):
    from curation.data.versions import create_version, current_version
    records = [rec("ok", "How do I change my card?", GOOD), rec("e", "Hello?"), rec("s", "Can I pay later?", "Yes.")]
    source = create_version(ws, records, parent=None, step="import")
    assert main([source.name, "--workspace", str(ws.root), "--skip", "empty_answer", "--min-answer-words", "3"]) == 0
    made = current_version(ws)
    options = FilterOptions(skip=("empty_answer",), min_answer_words=3)
    assert made.step == "filter" and made.parent_id == source.id
    assert made.params == {**options.to_dict(), "label_field": "label", "only": None}
    by_tab = apply_filters(ws, filter_version(ws, source.id, options))
    assert by_tab.content_hash == made.content_hash and by_tab.counts == made.counts
    assert "as v2" in capsys.readouterr().out
    assert main(["current", "--workspace", str(ws.root), "--max-garbage", "lots"]) == 2
    assert "max_garbage: 'lots' is not a valid number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["current", "--workspace", str(ws.root), "--skip", "spelling"])
    assert "invalid choice: 'spelling'" in capsys.readouterr().err
