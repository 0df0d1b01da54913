"""Training data: a split (a dataset version whose records carry meta["split"], or a folder with
train.jsonl / val.jsonl) turned into token ids with an assistant-only loss mask.

The mask is computed from the model's own chat template by rendering the conversation turn by
turn: the tokens an assistant turn adds (its text and end-of-turn token) are trained on, the
system and user turns are context only. This works for any prefix-preserving template, with no
``{% generation %}`` markers needed.

Before that, each conversation gets the run's system prompt (``RunConfig.system_prompt_mode``,
``apply_system_prompt``): a record's own, the base template's default, none, or a custom one; the job's
own answers at the end (ROUGE-L) see their prompts the same way.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.records import SPLITS, Record


@dataclass
class SplitData:
    """The records of each split and where they came from."""
    splits: dict[str, list[Record]]
    source: str                 # "v4" or the folder path
    version_id: int | None
    content_hash: str

    def __getitem__(self, name: str) -> list[Record]:
        return self.splits.get(name, [])

    def counts(self) -> dict[str, int]:
        return {name: len(self.splits.get(name, [])) for name in SPLITS}


# -- the system prompt --------------------------------------------------------------------------------

def template_default_system(tokenizer) -> str | None:
    """The system prompt the base model's chat template adds to a conversation that has none (SmolLM2's
    "You are a helpful AI assistant named SmolLM…"), or None when it adds none."""
    from jinja2 import TemplateError
    probe, marker = [{"role": "user", "content": "\x01probe\x01"}], "\x02system\x02"
    try:
        plain = tokenizer.apply_chat_template(probe, tokenize=False)
        with_system = tokenizer.apply_chat_template([{"role": "system", "content": marker}, *probe], tokenize=False)
    except (TemplateError, ValueError):   # a template without system turns adds none either
        return None
    head, _, tail = with_system.partition(marker)
    if plain.startswith(head) and plain.endswith(tail) and len(plain) > len(head) + len(tail):
        return plain[len(head):len(plain) - len(tail)]
    return None


def with_system_prompt(messages: list[dict[str, str]], mode: str, custom: str = "", *,
                       template_default: bool = False) -> list[dict[str, str]]:
    """A conversation under a system-prompt mode (``RunConfig.system_prompt_mode``). template: unchanged (the
    template adds its default where a record has none); records: a record's own, else none; none: no system
    prompt; custom: ``custom`` instead of any other. Where the template would add its default
    (``template_default``), "none" is an empty system turn, which keeps the default out."""
    own = [m for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    if mode == "template" or (mode == "records" and own):
        return list(messages)
    if mode == "custom":
        return [{"role": "system", "content": custom}, *rest]
    return ([{"role": "system", "content": ""}] if template_default else []) + rest


def run_conversations(conversations: list[list[dict[str, str]]], config, tokenizer) -> list[list[dict[str, str]]]:
    """The conversations as the model of a run with ``config`` is given them, under its system-prompt choice: the
    one place that choice is applied, for its SFT data and its own answers at the end, its DPO/KTO prompts, and
    whenever evaluation has the run answer (rating pairs, automatic metrics, regression suites, the playground).
    ``config`` None (an adapter from outside the registry, with no config beside it) leaves them unchanged."""
    if config is None:
        return [list(c) for c in conversations]
    default = template_default_system(tokenizer) is not None
    return [with_system_prompt(c, config.system_prompt_mode, config.system_prompt, template_default=default)
            for c in conversations]


def adapter_run_config(adapter: str | Path):
    """The config of the run that trained ``adapter`` (the config.yaml a run folder keeps beside ``adapter/``, as
    the registry and an exported archive lay it out), or None for an adapter without one."""
    from training.config import load_config
    path = Path(adapter).parent / "config.yaml"
    return load_config(path) if path.is_file() else None


def apply_system_prompt(tokenizer, records: list[Record], config) -> list[Record]:
    """The records as a run with ``config`` trains on them (and answers their prompts): its system prompt."""
    sent = run_conversations([r.messages for r in records], config, tokenizer)
    return [replace(r, messages=messages) for r, messages in zip(records, sent)]


def system_prompt_summary(tokenizer, records: list[Record], config) -> tuple[str, str | None]:
    """(what the conversations' system prompts will be, in one sentence; a warning when two kinds are mixed)."""
    n = len(records)
    own = sum(any(m["role"] == "system" for m in r.messages) for r in records)
    default = template_default_system(tokenizer)
    shown = f"'{default[:80]}…'" if default and len(default) > 80 else f"'{default}'"
    mode = config.system_prompt_mode
    if mode == "custom":
        return f"all {n} conversations get the custom system prompt ({own} records' own replaced)", None
    if mode == "none" or (mode == "records" and not default):
        gone = f" ({own} records' own removed)" if mode == "none" and own else ""
        text = (f"{own} conversations keep their own system prompt, {n - own} have none" if mode == "records"
                else f"no conversation has a system prompt{gone}")
        return text, None
    if mode == "records":
        return (f"{own} conversations keep their own system prompt, {n - own} have none (an empty system turn keeps "
                f"the base template's default {shown} out)"), None
    if not default:
        return f"{own} conversations keep their own system prompt, {n - own} have none (the template adds none)", None
    text = f"{own} conversations keep their own system prompt, {n - own} get the base template's default {shown}"
    mixed = (f"two kinds of system prompt are mixed in training ({own} records' own, {n - own} the template's "
             f"default); choose system_prompt_mode records, none or custom to train on one") if own and own < n \
        else None
    return text, mixed


def load_split_data(ws: Workspace | None, datasets: str) -> SplitData:
    """Records per split from a split version id (v4) or a folder with train.jsonl/val.jsonl[/test.jsonl]
    (validation.jsonl, as an export names it, for val)."""
    from curation.data.export import export_name
    from curation.data.versions import content_hash
    spec = str(datasets).strip()
    folder = Path(spec).expanduser()
    if folder.is_dir():
        splits = {}
        for name in SPLITS:
            path = folder / f"{name}.jsonl"
            if not path.is_file():   # an export names val as datasets does
                path = folder / f"{export_name(name)}.jsonl"
            if path.is_file():
                from curation.data.formats import read_records
                splits[name] = [Record(r.id, r.messages, {**r.meta, "split": name})
                                for r in read_records(path).records]
        if not splits.get("train"):
            raise TuneloopError(f"folder '{folder}' has no train.jsonl with records; a split folder holds "
                                f"train.jsonl and val.jsonl (and optionally test.jsonl)")
        every = [r for rs in splits.values() for r in rs]
        return SplitData(splits, str(folder), None, content_hash(every))
    if ws is None:
        raise TuneloopError(f"datasets '{spec}' is not a folder, and a dataset version needs a workspace")
    from curation.data.versions import get_version, load_records, parse_version_id
    try:
        vid = parse_version_id(spec)
    except TuneloopError:
        raise TuneloopError(f"datasets: '{spec}' is neither a dataset version (like v4) nor an existing folder "
                            f"with train.jsonl and val.jsonl") from None
    version = get_version(ws, vid)
    if version.kind == "preference":
        raise TuneloopError(f"datasets: {version.name} holds preference pairs, not chat records; name it in "
                            f"preferences (with stage: dpo) and a split version here")
    if version.kind == "kto":
        raise TuneloopError(f"datasets: {version.name} holds KTO examples, not chat records; name it in "
                            f"kto_data (with stage: kto) and a split version here")
    records = load_records(ws, vid)
    splits = {name: [r for r in records if r.meta.get("split") == name] for name in SPLITS}
    if not splits["train"]:
        raise TuneloopError(f"{version.name} has no records marked as training data; make a split first "
                            f"(Splits tab) and choose the version it creates")
    return SplitData(splits, version.name, version.id, version.content_hash)


def assistant_token_mask(tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a 0/1 mask that is 1 on assistant-turn tokens."""
    ids: list[int] = []
    mask: list[int] = []
    for i, message in enumerate(messages):
        rendered = _render_ids(tokenizer, messages[: i + 1])
        if rendered[: len(ids)] != ids:
            raise TuneloopError("the model's chat template is not prefix-preserving, so the assistant-only loss "
                                "mask cannot be computed; choose another base model")
        added = rendered[len(ids):]
        if message["role"] == "assistant":
            # The generation prompt ("<|im_start|>assistant\n") is context; the answer and its end token are trained.
            prompt = _render_ids(tokenizer, messages[:i], add_generation_prompt=True) if i else []
            head = len(prompt) - len(ids) if prompt[: len(ids)] == ids and len(prompt) <= len(rendered) else 0
            mask += [0] * head + [1] * (len(added) - head)
        else:
            mask += [0] * len(added)
        ids = rendered
    return ids, mask


def _render_ids(tokenizer, messages, add_generation_prompt: bool = False) -> list[int]:
    if not messages:
        return []
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt,
                                        return_dict=False)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


@dataclass
class TokenizedSplit:
    input_ids: list[list[int]]
    assistant_masks: list[list[int]]
    truncated: int = 0
    dropped: list[str] = field(default_factory=list)   # record ids with no assistant token left after cutting

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]

    @property
    def num_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def num_trained_tokens(self) -> int:
        return sum(sum(m) for m in self.assistant_masks)


def tokenize_records(tokenizer, records: list[Record], sequence_len: int) -> TokenizedSplit:
    """Token ids and assistant masks, cut at ``sequence_len``; conversations left with nothing to learn are dropped."""
    out = TokenizedSplit([], [])
    for record in records:
        ids, mask = assistant_token_mask(tokenizer, record.messages)
        if len(ids) > sequence_len:
            out.truncated += 1
            ids, mask = ids[:sequence_len], mask[:sequence_len]
        if not any(mask):
            out.dropped.append(record.id)
            continue
        out.input_ids.append(ids)
        out.assistant_masks.append(mask)
    return out


def token_statistics(tokenized: TokenizedSplit, sequence_len: int) -> dict[str, float]:
    lengths = sorted(tokenized.lengths) or [0]
    return {
        "conversations": len(tokenized.input_ids),
        "tokens": tokenized.num_tokens,
        "trained_tokens": tokenized.num_trained_tokens,
        "mean_len": round(statistics.mean(lengths), 1),
        "p95_len": lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))],
        "max_len": lengths[-1],
        "cut_at_sequence_len": tokenized.truncated,
        "dropped_no_answer": len(tokenized.dropped),
        "sequence_len": sequence_len,
    }


def render_loss_mask(tokenizer, messages: list[dict[str, str]], sequence_len: int | None = None) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, trained) spans: what the loss sees and what is context."""
    ids, mask = assistant_token_mask(tokenizer, messages)
    if sequence_len:
        ids, mask = ids[:sequence_len], mask[:sequence_len]
    spans: list[tuple[str, bool]] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or mask[i] != mask[start]:
            spans.append((tokenizer.decode(ids[start:i]), bool(mask[start])))
            start = i
    return spans

