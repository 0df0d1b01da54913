"""The KTO stage: learning from answers judged one at a time, starting from an SFT run's adapter.

What ``python -m training run`` does when the config says ``stage: kto``. DPO needs two answers to
one prompt with a winner; most feedback is not like that: a thumb on one served answer, a "both
bad" vote, one side of a vote nobody else saw. KTO (Ethayarajh et al., 2024; trl's KTOTrainer)
trains on such examples one by one: a prompt, an answer, and whether the answer was desirable.

The base model is loaded as for DPO (4-bit NF4 for QLoRA), the SFT run's adapter is put on top and
trained further; the reference is that same adapter, frozen (trl copies it into a second adapter).
Examples come from a KTO dataset version (``kto_data: v9``, made from an evaluation's votes or from
thumbs on served answers by the feedback steps) or a JSONL file of prompt/completion/label; the run
stores the version and its content hash and checks it again before training. Examples whose prompt
is in the test split are left out, val examples are the evaluation set, as for DPO.

Desirable and undesirable examples are weighted so that both sides count the same in the loss
(the KTO paper's advice: λ_D·n_D / λ_U·n_U in [1, 4/3]); the weights are stated in the log and the
run's summary. trl estimates KTO's reference point from mismatched prompt/answer pairs within a
batch, so ``micro_batch_size`` must be at least 2 and the examples are shuffled once (same seed,
same order) so that two answers to one prompt seldom share a batch as neighbours.

Metrics lines are the SFT job's plus ``rewards/chosen`` (desirable), ``rewards/rejected``
(undesirable), ``rewards/margins`` and ``kl``. Stop and resume work as for the other stages.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import InputProblem
from core.workspace import Workspace
from curation.data.records import Record, new_record_id
from training.dpo import (DpoStage, _as_messages, _rewards_callback, _RewardsLog, nothing_to_train,
                          split_preference_pairs, version_or_file)
from training.job import trainer_arguments

KTO_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "kl")


def kto_problems(config) -> list[str]:
    """What a ``stage: kto`` config is missing, each naming its key (RunConfig.problems adds these)."""
    out = []
    if not str(config.sft_run).strip():
        out.append("sft_run: KTO starts from a finished SFT run's adapter; name the run (e.g. 3)")
    if not str(config.kto_data).strip():
        out.append("kto_data: name a KTO dataset version (e.g. v9; the Results tab or `python -m evaluation "
                   "export-kto EVAL` makes one from votes, `python -m evaluation merge-served-feedback` from thumbs "
                   "on served answers), or a JSONL file of prompt/completion/label")
    if config.kto_beta <= 0:
        out.append(f"kto_beta: {config.kto_beta} must be above 0 (0.1 is the usual value)")
    if config.micro_batch_size < 2:
        out.append(f"micro_batch_size: KTO needs at least 2 (now {config.micro_batch_size}): it estimates its "
                   f"reference point from other answers in the same batch")
    return out


@dataclass
class KtoData:
    """The KTO examples a run trains on and where they came from (like training.dpo.PreferenceData)."""
    examples: list[Record]
    source: str                 # "v9" or the file path
    version_id: int | None
    content_hash: str


def load_kto_examples(ws: Workspace | None, spec: str) -> KtoData:
    """KTO records (prompt messages, completion, desirable, meta) from a KTO version or a JSONL file."""
    def wrong_kind(version) -> str:
        holds = "preference pairs (name it in preferences, with stage: dpo)" if version.kind == "preference" \
            else "chat records"
        return (f"{version.name} holds {holds}, not KTO examples; make a KTO version from an evaluation's votes "
                f"(Results tab, or `python -m evaluation export-kto EVAL`) or from served feedback "
                f"(`python -m evaluation merge-served-feedback`) and name it here")
    return KtoData(*version_or_file(ws, spec, key="kto_data", kind="kto", read_file=_examples_from_file,
                                    neither="a KTO dataset version (like v9)", wrong_kind=wrong_kind))


def _examples_from_file(path: Path) -> list[Record]:
    examples, problems = [], []
    for line, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(f"line {line}: not JSON ({exc.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {line}: expected an object with prompt, completion and label")
            continue
        missing = [k for k in ("prompt", "completion") if not row.get(k)] + ([] if "label" in row else ["label"])
        if missing:
            problems.append(f"line {line}: missing {', '.join(missing)}")
            continue
        if not isinstance(row["label"], bool):
            problems.append(f"line {line}: label must be true (desirable) or false (undesirable), not "
                            f"{json.dumps(row['label'])}")
            continue
        prompt = _as_messages(row["prompt"], "user")
        examples.append(Record(id=str(row.get("id") or new_record_id(prompt, salt=f"{path.name}:{line}")),
                               messages=prompt, meta=dict(row.get("meta") or {}),
                               completion=_as_messages(row["completion"], "assistant"), desirable=row["label"]))
    if problems:
        raise InputProblem(problems, source=str(path))
    return examples


def trainable_examples(ws: Workspace | None, config) -> tuple[KtoData, dict[str, list[Record]]]:
    """The KTO examples a ``stage: kto`` config names, split for training; refuses (before launch, and again
    in the job) a config with no example to train on."""
    data = load_kto_examples(ws, config.kto_data)
    parts = split_preference_pairs(data.examples)
    if not parts["train"]:
        raise nothing_to_train("kto_data", "KTO examples", len(data.examples), parts,
                               "and give thumbs or votes on their answers")
    return data, parts


def balance_weights(examples: list[Record]) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) that make both sides weigh the same: λ_D·n_D = λ_U·n_U, the
    larger side at weight 1; (1, 1) when one side is absent."""
    good = sum(1 for e in examples if e.desirable)
    bad = len(examples) - good
    if not good or not bad:
        return 1.0, 1.0
    return (round(bad / good, 4), 1.0) if good < bad else (1.0, round(good / bad, 4))


def _dataset(examples: list[Record], config, tokenizer, seed: int | None = None):
    """The examples as trl takes them, each prompt under the run's system-prompt choice (as SFT trained it)."""
    from datasets import Dataset
    from training.data import run_conversations
    prompts = run_conversations([e.messages for e in examples], config, tokenizer)
    ds = Dataset.from_list([{"prompt": prompt, "completion": e.completion, "label": bool(e.desirable)}
                            for e, prompt in zip(examples, prompts)])
    return ds.shuffle(seed=seed) if seed is not None else ds


def build_kto_trainer(config, model, tokenizer, train_ds, eval_ds, output: Path, callbacks,
                      weights: tuple[float, float]):
    """trl's KTOTrainer for this config over a PeftModel that already carries the SFT adapter."""
    from trl import KTOConfig, KTOTrainer

    evaluating = bool(config.eval_steps) and eval_ds is not None
    args = KTOConfig(**trainer_arguments(config, output, evaluating), beta=config.kto_beta,
                     max_length=config.sequence_len, desirable_weight=weights[0], undesirable_weight=weights[1])
    return KTOTrainer(model=model, ref_model=None, args=args, train_dataset=train_ds,
                      eval_dataset=eval_ds if evaluating else None, processing_class=tokenizer,
                      callbacks=list(callbacks))


class KtoStage(DpoStage):
    """KTO over the SFT run's adapter, on the KTO examples the config names (test prompts left out)."""

    name = "KTO training"
    reward_keys = KTO_KEYS

    def training_data(self, ws, config):
        return trainable_examples(ws, config)

    def build(self, ws, run, config, resolved, log, callback):
        data, parts = self.checked_data(ws, run, config, "kto_data", "examples")
        train = parts["train"]
        weights = balance_weights(train)
        good = sum(1 for e in train if e.desirable)
        print(f"[tuneloop] run #{run.id}: KTO from run {self.sft.label} on {len(train)} examples ({good} desirable, "
              f"{len(train) - good} undesirable; weights {weights[0]} and {weights[1]}), {len(parts['val'])} for "
              f"evaluation, {len(parts['test'])} from test prompts left out", flush=True)
        model, tokenizer = self.sft_adapter_model(resolved, config)
        rewards_log = _RewardsLog(log)
        trainer = build_kto_trainer(config, model, tokenizer, _dataset(train, config, tokenizer, config.seed),
                                    _dataset(parts["val"], config, tokenizer) if parts["val"] else None,
                                    run.checkpoints_dir,
                                    [_rewards_callback(rewards_log, KTO_KEYS), callback(rewards_log)], weights)
        return trainer, tokenizer, {"stage": "kto", "sft_run": self.sft.id, "train_examples": len(train),
                                    "desirable": good, "undesirable": len(train) - good,
                                    "desirable_weight": weights[0], "undesirable_weight": weights[1],
                                    "val_examples": len(parts["val"]), "test_examples_left_out": len(parts["test"]),
                                    "kto_examples_hash": data.content_hash}
