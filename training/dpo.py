"""The DPO stage: preference training from rated pairs, starting from an SFT run's adapter.

What ``python -m training run`` does when the config says ``stage: dpo``. The base model is loaded
the same way as for SFT (4-bit NF4 for QLoRA), the SFT run's LoRA adapter is put on top and
trained further with trl's DPOTrainer; the reference model is that same adapter, frozen (trl copies
it into a second adapter, so no second model is held in memory). The LoRA shape (rank, targets)
comes from the SFT adapter; ``lora_*`` keys do not apply.

Preference pairs come from a preference dataset version (``preferences: v7``, made from an
evaluation's votes by the feedback step) or from a JSONL file of prompt/chosen/rejected; the run
stores the version and its content hash, as an SFT run does for its split. Pairs whose prompt is in
the test split (``meta.split``) are left out, so the test split stays a fair judge; pairs from the
val split are the evaluation set; the rest (train split, typed prompts) are trained on.

Metrics lines are the SFT job's (loss, eval_loss, progress, memory) plus ``rewards/margins``,
``rewards/accuracies``, ``rewards/chosen`` and ``rewards/rejected`` (``eval_rewards/...`` on eval
lines). Stop and resume work as for SFT: the STOP file or SIGTERM checkpoints and stops.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import TuneloopError
from core.workspace import Workspace
from curation.data.records import Record, new_record_id
from curation.data.versions import content_hash, get_version, load_records, parse_version_id
from training.job import Stage, peak_rss_mb, trainer_arguments

REWARD_KEYS = ("rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")


def dpo_problems(config) -> list[str]:
    """What a ``stage: dpo`` config is missing, each naming its key (RunConfig.problems adds these)."""
    out = []
    if not str(config.sft_run).strip():
        out.append("sft_run: DPO starts from a finished SFT run's adapter; name the run (e.g. 3)")
    if not str(config.preferences).strip():
        out.append("preferences: name a preference dataset version (e.g. v7; the Results tab or `python -m "
                   "evaluation export-preferences EVAL` makes one from votes), or a JSONL file of prompt/chosen/rejected")
    if config.dpo_beta <= 0:
        out.append(f"dpo_beta: {config.dpo_beta} must be above 0 (0.1 is the usual value)")
    return out


# -- preference pairs -------------------------------------------------------------------------

@dataclass
class PreferenceData:
    """The preference records a DPO run trains on and where they came from (like training.data.SplitData)."""
    pairs: list[Record]
    source: str                 # "v7" or the file path
    version_id: int | None
    content_hash: str


def load_preference_pairs(ws: Workspace | None, spec: str) -> PreferenceData:
    """Preference records (prompt messages, chosen, rejected, meta) from a preference version or a JSONL file."""
    return PreferenceData(*version_or_file(
        ws, spec, key="preferences", kind="preference", read_file=_pairs_from_file,
        neither="a preference dataset version (like v7)",
        wrong_kind=lambda version: (f"{version.name} holds chat records, not preference pairs; make a preference "
                                    f"version from an evaluation's votes (Results tab, or `python -m evaluation "
                                    f"export-preferences EVAL`) and name it here")))


def version_or_file(ws: Workspace | None, spec: str, *, key: str, kind: str, read_file, neither: str, wrong_kind):
    """(records, source, version id, content hash) for a config key that names a JSONL file or a dataset version
    of ``kind``; a wrong kind is refused with ``wrong_kind(version)``, each message naming ``key``."""
    text = str(spec).strip()
    path = Path(text).expanduser()
    if path.is_file():
        records = read_file(path)
        return records, str(path), None, content_hash(records)
    if ws is None:
        raise TuneloopError(f"{key}: '{text}' is not a file, and a dataset version needs a workspace")
    try:
        version = get_version(ws, parse_version_id(text))
    except TuneloopError:
        raise TuneloopError(f"{key}: '{text}' is neither {neither} nor an existing JSONL file") from None
    if version.kind != kind:
        raise TuneloopError(f"{key}: {wrong_kind(version)}")
    return load_records(ws, version.id), version.name, version.id, version.content_hash


def _as_messages(value: Any, role: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return list(value)


def _pairs_from_file(path: Path) -> list[Record]:
    from core.errors import InputProblem
    pairs, problems = [], []
    for line, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(f"line {line}: not JSON ({exc.msg})")
            continue
        missing = [k for k in ("prompt", "chosen", "rejected") if not row.get(k)] if isinstance(row, dict) else ["all"]
        if missing:
            problems.append(f"line {line}: missing {', '.join(missing)}")
            continue
        prompt = _as_messages(row["prompt"], "user")
        pairs.append(Record(id=str(row.get("id") or new_record_id(prompt, salt=f"{path.name}:{line}")), messages=prompt,
                            meta=dict(row.get("meta") or {}), chosen=_as_messages(row["chosen"], "assistant"),
                            rejected=_as_messages(row["rejected"], "assistant")))
    if problems:
        raise InputProblem(problems, source=str(path))
    return pairs


def split_preference_pairs(pairs: list[Record]) -> dict[str, list[Record]]:
    """train (train split and prompts with no split), val (the evaluation set), test (left out); for
    preference pairs and KTO examples alike."""
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for pair in pairs:
        out[pair.split if pair.split in ("val", "test") else "train"].append(pair)
    return out


def nothing_to_train(key: str, what: str, total: int, parts: dict[str, list[Record]], advice: str) -> TuneloopError:
    """The refusal of a DPO or KTO config whose data holds nothing it may train on, saying why and what to do."""
    reasons = []
    if parts["test"]:
        reasons.append(f"{len(parts['test'])} come from test prompts, which stay out of training so the test split "
                       f"stays a fair judge")
    if parts["val"]:
        reasons.append(f"{len(parts['val'])} from val prompts, which only evaluate")
    why = "; ".join(reasons) or "it is empty"
    return TuneloopError(f"{key}: none of the {total} {what} can be trained on: {why}. Rate to improve instead: "
                         f"rate prompts from the train split, typed prompts or production requests, {advice}")


def trainable_pairs(ws: Workspace | None, config) -> tuple[PreferenceData, dict[str, list[Record]]]:
    """The preference pairs a ``stage: dpo`` config names, split for training; refuses (before launch, and
    again in the job) a config with no pair to train on."""
    data = load_preference_pairs(ws, config.preferences)
    parts = split_preference_pairs(data.pairs)
    if not parts["train"]:
        raise nothing_to_train("preferences", "preference pairs", len(data.pairs), parts,
                               "and decide them with A/B votes")
    return data, parts


def _dataset(pairs: list[Record], config, tokenizer):
    """The pairs as trl takes them, each prompt under the run's system-prompt choice (as SFT trained it)."""
    from datasets import Dataset
    from training.data import run_conversations
    prompts = run_conversations([p.messages for p in pairs], config, tokenizer)
    return Dataset.from_list([{"prompt": prompt, "chosen": p.chosen, "rejected": p.rejected}
                              for p, prompt in zip(pairs, prompts)])


# -- the trainer ------------------------------------------------------------------------------

class _RewardsLog:
    """The SFT callback's metrics log, with the DPO (or KTO) reward figures of the same trainer log added."""

    def __init__(self, log):
        self.log = log
        self.latest: dict[str, float] = {}

    def write(self, row: dict[str, Any]) -> None:
        if row.get("event") in ("train", "eval"):
            row = {**row, **self.latest}
        self.log.write(row)

    def __getattr__(self, name: str):
        return getattr(self.log, name)     # everything else (path, phase, drop_after ...) is the job's log's


def _rewards_callback(rewards_log: _RewardsLog, keys: tuple[str, ...] = REWARD_KEYS):
    from transformers import TrainerCallback

    class RewardFigures(TrainerCallback):
        """Runs before the SFT callback, so the row it writes carries this log's reward figures."""

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            rewards_log.latest = {k: round(float(logs[k]), 5) for k in logs
                                  if k in keys or k.removeprefix("eval_") in keys}

    return RewardFigures()


def build_dpo_trainer(config, model, tokenizer, train_ds, eval_ds, output: Path, callbacks):
    """trl's DPOTrainer for this config over a PeftModel that already carries the SFT adapter."""
    from trl import DPOConfig, DPOTrainer

    evaluating = bool(config.eval_steps) and eval_ds is not None
    args = DPOConfig(**trainer_arguments(config, output, evaluating), beta=config.dpo_beta,
                     max_length=config.sequence_len)
    return DPOTrainer(model=model, ref_model=None, args=args, train_dataset=train_ds,
                      eval_dataset=eval_ds if evaluating else None, processing_class=tokenizer,
                      callbacks=list(callbacks))


class DpoStage(Stage):
    """DPO over the SFT run's adapter, on the preference pairs the config names (test prompts left out)."""

    name = "DPO training"
    reward_keys = REWARD_KEYS

    def base_model(self, ws, run, config):
        from training.models import resolve_base_model
        from training.registry import get_run
        self.sft = get_run(ws, config.sft_run)
        if not (self.sft.adapter_dir / "adapter_config.json").is_file():
            raise TuneloopError(f"sft_run: run {self.sft.label} has no adapter (status: {self.sft.status}); "
                                f"{config.stage.upper()} starts from a finished run's adapter")
        resolved = resolve_base_model(self.sft.base_model, ws)
        if resolve_base_model(config.base_model, ws).path != resolved.path:
            raise TuneloopError(f"base_model: run {self.sft.label} was trained on {self.sft.base_model}; "
                                f"{config.stage.upper()} must use the same base model (set base_model: "
                                f"{self.sft.base_model})")
        return resolved

    def training_data(self, ws, config):
        """(the data with its source and hash, its train/val/test parts); refuses data with nothing to train on."""
        return trainable_pairs(ws, config)

    def checked_data(self, ws, run, config, key: str, what: str):
        """``training_data``, refused when it no longer has the hash the run was registered with."""
        data, parts = self.training_data(ws, config)
        if run.preference_hash and data.content_hash != run.preference_hash:
            raise TuneloopError(f"{key}: {data.source} no longer holds the {what} this run was created with "
                                f"(hash {data.content_hash[:12]}, registered {run.preference_hash[:12]}); create a "
                                f"new run")
        return data, parts

    def sft_adapter_model(self, resolved, config):
        """The base model (4-bit for QLoRA) with the SFT run's adapter on it, trainable; and its tokenizer."""
        from peft import PeftModel, prepare_model_for_kbit_training
        from training.models import load_model_and_tokenizer
        model, tokenizer = load_model_and_tokenizer(resolved, load_in_4bit=config.load_in_4bit)
        if config.load_in_4bit:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
        return PeftModel.from_pretrained(model, str(self.sft.adapter_dir), is_trainable=True), tokenizer

    def build(self, ws, run, config, resolved, log, callback):
        data, parts = self.checked_data(ws, run, config, "preferences", "pairs")
        print(f"[tuneloop] run #{run.id}: DPO from run {self.sft.label} on {len(parts['train'])} preference pairs "
              f"({len(parts['val'])} for evaluation, {len(parts['test'])} from test prompts left out)", flush=True)
        model, tokenizer = self.sft_adapter_model(resolved, config)
        rewards_log = _RewardsLog(log)
        trainer = build_dpo_trainer(config, model, tokenizer, _dataset(parts["train"], config, tokenizer),
                                    _dataset(parts["val"], config, tokenizer) if parts["val"] else None,
                                    run.checkpoints_dir,
                                    [_rewards_callback(rewards_log), callback(rewards_log)])
        return trainer, tokenizer, {"stage": "dpo", "sft_run": self.sft.id, "train_pairs": len(parts["train"]),
                                    "val_pairs": len(parts["val"]), "test_pairs_left_out": len(parts["test"]),
                                    "preference_pairs_hash": data.content_hash}

    def after_training(self, trainer, run, summary):
        from training.registry import read_metrics
        trained = [r for r in read_metrics(run) if r.get("event") == "train"]
        if trained:
            summary.update({k: trained[-1][k] for k in self.reward_keys if k in trained[-1]})

    def final_evaluation(self, trainer, run, log, summary):
        if trainer.eval_dataset is not None:
            final = trainer.evaluate()
            log.write({"step": trainer.state.global_step, "event": "final_eval", "eval_loss": round(final["eval_loss"], 5),
                       **{k: round(final[k], 5) for k in final if k.removeprefix("eval_") in self.reward_keys},
                       "peak_rss_mb": peak_rss_mb()})
            summary["final_eval_loss"] = round(final["eval_loss"], 5)

    def trained_model(self, trainer):
        if "ref" in trainer.model.peft_config:
            trainer.model.delete_adapter("ref")     # the frozen reference copy is not part of the result
        return trainer.model
