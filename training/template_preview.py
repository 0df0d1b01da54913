"""Template preview: exactly the text the model will see for a record, and which of its tokens train it.

A record is rendered with the base model's own chat template and tokenized; the loss mask is the
one training uses (``training.data.assistant_token_mask``: assistant turns and their end-of-turn
token are trained, system and user turns are context). Tokens past the sequence length are cut
off in training, and are shown as such. Over a whole dataset, the token lengths make a histogram
with the cut-off marked, so you see how many conversations lose their ending.

Only the tokenizer is loaded, never the model weights.

Example::

    tokenizer, name = load_preview_tokenizer("default", ws)
    preview = preview_record(tokenizer, record, sequence_len=512)
    preview.segments        # [(text, "context" | "trained" | "cut off"), ...]
    stats = token_length_stats(tokenizer, records, sequence_len=512)

CLI: ``python -m training.template_preview INPUT [--record ID] [--model default] [--sequence-len N]``
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from core.errors import TuneloopError
from curation.data.records import Record

Progress = Callable[[float, str], None]
CONTEXT, TRAINED, CUT = "context", "trained", "cut off"


def default_sequence_len() -> int:
    """The run config's default sequence length, so the preview cuts where training cuts."""
    from training.config import RunConfig
    return RunConfig().sequence_len


def load_preview_tokenizer(model: str = "default", ws=None):
    """(tokenizer, model name) of a base model, as training resolves it; the weights are not loaded."""
    from training.models import load_tokenizer, resolve_base_model
    resolved = resolve_base_model(model, ws)
    return load_tokenizer(resolved), resolved.name


@dataclass
class TemplatePreview:
    record_id: str
    segments: list[tuple[str, str]]    # (text, CONTEXT | TRAINED | CUT), in order; joined they are the full text
    tokens: int                        # the whole conversation
    trained_tokens: int                # trained tokens that fit within the sequence length
    context_tokens: int                # context tokens that fit
    cut_tokens: int                    # tokens past the sequence length
    sequence_len: int

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.segments)

    def counts(self) -> dict[str, int]:
        return {"tokens": self.tokens, "trained": self.trained_tokens, "context": self.context_tokens,
                "cut off": self.cut_tokens, "sequence length": self.sequence_len}


def _token_kinds(tokenizer, record: Record, sequence_len: int) -> tuple[list[int], list[str]]:
    from training.data import assistant_token_mask

    ids, mask = assistant_token_mask(tokenizer, record.messages)
    kinds = [CUT if i >= sequence_len else (TRAINED if m else CONTEXT) for i, m in enumerate(mask)]
    return ids, kinds


def preview_record(tokenizer, record: Record, sequence_len: int | None = None) -> TemplatePreview:
    """The record rendered by the tokenizer's chat template, split into context / trained / cut-off text."""
    sequence_len = sequence_len or default_sequence_len()
    if not record.messages:
        raise TuneloopError(f"record {record.id} has no turns to render")
    ids, kinds = _token_kinds(tokenizer, record, sequence_len)
    segments: list[tuple[str, str]] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or kinds[i] != kinds[start]:
            segments.append((tokenizer.decode(ids[start:i]), kinds[start]))
            start = i
    return TemplatePreview(record_id=record.id, segments=segments, tokens=len(ids),
                           trained_tokens=kinds.count(TRAINED), context_tokens=kinds.count(CONTEXT),
                           cut_tokens=kinds.count(CUT), sequence_len=sequence_len)


def token_lengths(tokenizer, records: list[Record], *, progress: Progress | None = None) -> list[int]:
    """Tokens per record as training renders it (the chat template applied to all turns)."""
    out = []
    step = max(1, len(records) // 50)
    for i, r in enumerate(records):
        out.append(len(tokenizer.apply_chat_template(r.messages, tokenize=True, return_dict=False)))
        if progress and i % step == 0:
            progress(i / max(1, len(records)), f"tokenizing {i:,}/{len(records):,}")
    return out


@dataclass
class TokenLengthStats:
    lengths: list[int]
    sequence_len: int

    @property
    def over(self) -> int:
        return sum(1 for n in self.lengths if n > self.sequence_len)

    def summary(self) -> dict[str, Any]:
        values = sorted(self.lengths) or [0]
        return {"records": len(self.lengths), "median": values[len(values) // 2],
                "p95": values[min(len(values) - 1, int(0.95 * len(values)))], "max": values[-1],
                "sequence length": self.sequence_len, "cut off": self.over,
                "cut off %": round(100.0 * self.over / len(self.lengths), 1) if self.lengths else 0.0}

    def histogram(self, bins: int = 30) -> list[dict[str, Any]]:
        """Rows {tokens (bin start), records, part}: per bin, the records that fit and those cut off
        (a bin holding the cut-off has both), for a stacked bar chart."""
        if not self.lengths:
            return []
        width = max(1, -(-(max(max(self.lengths), self.sequence_len) + 1) // bins))
        counts: dict[tuple[int, str], int] = {}
        for n in self.lengths:
            key = (n // width, CUT if n > self.sequence_len else "fits")
            counts[key] = counts.get(key, 0) + 1
        return [{"tokens": b * width, "records": counts.get((b, part), 0), "part": part}
                for b in range(max(b for b, _ in counts) + 1) for part in ("fits", CUT)]


def token_length_stats(tokenizer, records: list[Record], sequence_len: int | None = None, *,
                       progress: Progress | None = None) -> TokenLengthStats:
    return TokenLengthStats(token_lengths(tokenizer, records, progress=progress), sequence_len or default_sequence_len())


# -- CLI ---------------------------------------------------------------------------------------------------

_MARK = {CONTEXT: ("", ""), TRAINED: ("\033[1;32m", "\033[0m"), CUT: ("\033[9;90m", "\033[0m")}
_PLAIN = {CONTEXT: ("", ""), TRAINED: ("[[", "]]"), CUT: ("<<cut:", ">>")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.template_preview",
                                description="Show a record exactly as the model sees it, with the trained tokens marked, "
                                            "and the token lengths of the whole dataset.")
    p.add_argument("input", help="a data file, or a version such as v3 of --workspace")
    p.add_argument("--record", help="record id to show (default: the first)")
    p.add_argument("--model", default="default", help="base model (default: the built-in SmolLM2-135M-Instruct)")
    p.add_argument("--sequence-len", type=int, help="training's sequence length (default: the run config's)")
    p.add_argument("--workspace", help="workspace for versions and converted models")
    p.add_argument("--plain", action="store_true", help="mark trained text [[like this]] instead of with colour")
    args = p.parse_args(argv)
    try:
        ws = None
        if Path(args.input).exists():
            from curation.data.formats import read_records
            records = read_records(args.input).records
        else:
            from core.workspace import Workspace
            from curation.data.versions import load_records
            ws = Workspace.open(args.workspace)
            records = load_records(ws, args.input)
        if args.workspace and ws is None:
            from core.workspace import Workspace
            ws = Workspace.open(args.workspace)
        record = next((r for r in records if r.id == args.record), None) if args.record else records[0]
        if record is None:
            raise TuneloopError(f"there is no record '{args.record}' in {args.input}")
        tokenizer, name = load_preview_tokenizer(args.model, ws)
        preview = preview_record(tokenizer, record, args.sequence_len)
        stats = token_length_stats(tokenizer, records, preview.sequence_len)
    except TuneloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    marks = _PLAIN if args.plain or not sys.stdout.isatty() else _MARK
    print(f"record {record.id} rendered for {name}:\n")
    print("".join(f"{marks[kind][0]}{text}{marks[kind][1]}" for text, kind in preview.segments))
    print("\n" + " · ".join(f"{k} {v}" for k, v in preview.counts().items()))
    print("dataset: " + " · ".join(f"{k} {v}" for k, v in stats.summary().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
