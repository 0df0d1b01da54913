"""The QLoRA job: what ``python -m training run CONFIG.yaml`` does, in its own process.

Loads the base model through ``resolve_base_model`` (4-bit NF4 via bitsandbytes on CPU and CUDA
alike, or full precision; with ``fit_to_memory`` preflight's memory plan picks, see
``training.preflight.plan_memory``), adds LoRA adapters (peft) and trains with trl's SFTTrainer on
assistant tokens only. On CPU the LoRA weights train in fp32 and only the trained tokens go through
the LM head (``trained_tokens_loss``); Ctrl-C stops like the tab's Stop. It
evaluates every ``eval_steps`` (with early stopping), checkpoints every ``save_steps``, appends to
``output_dir/metrics.jsonl`` as it goes and writes the adapter to ``output_dir/adapter/``. A stop
request (the STOP file, or SIGTERM) saves a checkpoint and stops; ``--resume`` continues from it.
Under ``accelerate launch`` only the main process writes metrics and the registry.
"""
from __future__ import annotations

import json
import math
import os
import resource
import shutil
import signal
import socket
import sys
import time
import traceback
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from core.errors import TuneloopError
from core.workspace import Workspace
from training.config import RunConfig
from training.registry import (STOP_FILE, Run, _now, _process_start_time, get_run, last_checkpoint, merge_run_json,
                               read_metrics, start_next_queued, update_run)

OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "std::bad_alloc")
# What a run does, in order; each is reported as it starts (and with its own progress where it has some).
PHASES = ("loading the model", "base-model evaluation", "training", "final evaluation", "saving the adapter",
          "ROUGE-L answers")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (Linux reports KB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class MetricsLog:
    """Appends one JSON line per event to metrics.jsonl, flushed at once so the tab can tail it."""

    def __init__(self, path: Path):
        self.path = path
        self.current: dict[str, Any] = {}

    def write(self, row: dict[str, Any]) -> None:
        if not is_main_process():
            return
        row = {"time": round(time.time(), 3), **row}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def phase(self, name: str, done: int | None = None, total: int | None = None) -> None:
        """The phase the run is in (one of PHASES) and its own progress: a metrics line for the tab, a line
        on stdout (train.log, the terminal of ``python -m training run``) for people."""
        self.current = {"event": "phase", "phase": name, "done": done, "total": total}
        self.write(self.current)
        if is_main_process():
            print(f"[tuneloop] phase: {name}" + (f" {done}/{total}" if total else ""), flush=True)

    def drop_after(self, step: int) -> None:
        """On resume: forget what was logged after the checkpoint, since those steps run again."""
        if not is_main_process() or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("step", 0) <= step or row.get("event") == "base_eval":
                kept.append(line + "\n")
        from core.workspace import atomic_write
        atomic_write(self.path, "".join(kept).encode("utf-8"))


def _callbacks(ws: Workspace, run: Run, log: MetricsLog, stop_flag: dict):
    from transformers import TrainerCallback

    class TuneloopCallback(TrainerCallback):
        """Metrics lines, heartbeat, and the graceful stop (checkpoint at the end of this step, then stop)."""

        def __init__(self):
            self.start = None
            self.start_cpu = 0.0
            self.start_step = 0
            self.start_tokens = 0
            self.last_heartbeat = 0.0
            self.training = False   # evaluations before and after training are logged by the job itself

        def on_train_end(self, args, state, control, **kw):
            self.training = False

        def on_train_begin(self, args, state, control, **kw):
            self.training = True
            self.start = time.monotonic()
            self.start_cpu = time.process_time()
            self.start_step = state.global_step
            self.start_tokens = state.num_input_tokens_seen or 0
            log.phase("training", state.global_step, state.max_steps)

        def on_step_end(self, args, state, control, **kw):
            if (run.run_dir / STOP_FILE).exists() or stop_flag.get("stop"):
                stop_flag["stop"] = True
                control.should_save = True
                control.should_training_stop = True
            if is_main_process() and time.monotonic() - self.last_heartbeat > 5:
                self.last_heartbeat = time.monotonic()
                update_run(ws, run.id, heartbeat_at=_now())

        def on_prediction_step(self, args, state, control, **kw):
            # an evaluation outside training (base model, final) counts its batches as its progress
            phase = log.current
            if not self.training and phase.get("phase") in ("base-model evaluation", "final evaluation"):
                done = min(phase["done"] + args.per_device_eval_batch_size, phase["total"])
                log.phase(phase["phase"], done, phase["total"])

        def on_log(self, args, state, control, logs=None, **kw):
            if not self.training:
                return
            logs = dict(logs or {})
            elapsed = max(time.monotonic() - (self.start or time.monotonic()), 1e-6)
            steps_done = state.global_step - self.start_step
            tokens = (state.num_input_tokens_seen or 0) - self.start_tokens
            row = {"step": state.global_step, "max_steps": state.max_steps, "epoch": round(state.epoch or 0, 4),
                   "peak_rss_mb": peak_rss_mb()}
            if "eval_loss" in logs:
                row.update(event="eval", eval_loss=round(logs["eval_loss"], 5))
            elif "loss" in logs:
                remaining = max(state.max_steps - state.global_step, 0)
                row.update(event="train", loss=round(logs["loss"], 5),
                           learning_rate=logs.get("learning_rate"), grad_norm=_num(logs.get("grad_norm")),
                           tokens_seen=state.num_input_tokens_seen,
                           tokens_per_s=round(tokens / elapsed, 1),
                           eta_s=round(elapsed / steps_done * remaining, 1) if steps_done else None)
            elif "train_runtime" in logs:
                # CPU seconds beside the wall clock: on a shared machine tokens per CPU-second is the steady figure.
                row.update(event="train_end", train_runtime=logs.get("train_runtime"),
                           train_cpu_s=round(time.process_time() - self.start_cpu, 2),
                           train_loss=_num(logs.get("train_loss")))
            else:
                return
            row["peak_gpu_mb"] = _peak_gpu_mb()
            log.write(row)

    return TuneloopCallback()


def _num(value):
    return None if value is None else round(float(value), 5)


def _peak_gpu_mb() -> float | None:
    import torch
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return None


def trainer_arguments(config: RunConfig, output: Path, evaluating: bool) -> dict:
    """The TrainingArguments both stages (SFT and DPO) take from a run config, in one place."""
    import torch

    on_cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(output),
        per_device_train_batch_size=config.micro_batch_size,
        per_device_eval_batch_size=config.micro_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.num_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        eval_strategy="steps" if evaluating else "no",
        eval_steps=config.eval_steps or None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=1,
        logging_first_step=True,
        seed=config.seed,
        data_seed=config.seed,
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        use_cpu=not on_cuda,
        bf16=on_cuda and torch.cuda.is_bf16_supported(),
        fp16=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def build_trainer(config: RunConfig, model, tokenizer, train_ds, eval_ds, output: Path, callbacks):
    """trl's SFTTrainer for this config: pre-tokenized data with assistant masks, LoRA already applied."""
    from trl import SFTConfig, SFTTrainer
    from transformers import EarlyStoppingCallback

    evaluating = bool(config.eval_steps) and eval_ds is not None
    args = SFTConfig(
        **trainer_arguments(config, output, evaluating),
        load_best_model_at_end=bool(config.early_stopping_patience) and evaluating,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        max_length=config.sequence_len,
        packing=config.packing,
        # Conversations of similar length share a batch, so little compute goes to padding.
        train_sampling_strategy="random" if config.packing else "group_by_length",
        include_num_input_tokens_seen="non_padding",
    )
    cbs = list(callbacks)
    if config.early_stopping_patience and evaluating:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))

    class TrainedTokensSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss on CPU (training and evaluation) sends only the trained tokens through the LM head."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or not plain_lm_head(model, self.args):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = trained_tokens_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return loss

    return TrainedTokensSFTTrainer(model=model, args=args, train_dataset=train_ds,
                                   eval_dataset=eval_ds if evaluating else None, processing_class=tokenizer,
                                   callbacks=cbs)


# Config keys by which a model scales or caps its logits; the plain LM head of trained_tokens_loss has neither.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                    "logits_scaling")


def plain_lm_head(model, args) -> bool:
    """Whether ``trained_tokens_loss`` gives trl's loss for this model: on CPU, the plain negative
    log-likelihood, a model whose logits are its LM head's output."""
    import torch
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    text = causal.config.get_text_config()
    return (args.loss_type == "nll" and causal.get_output_embeddings().weight.device.type == "cpu"
            and not torch.cuda.is_available() and all(getattr(text, key, None) is None for key in LOGIT_TRANSFORMS))


def trained_tokens_loss(model, inputs, num_items_in_batch=None):
    """trl's SFT loss (negative log-likelihood of the labelled tokens, summed, over ``num_items_in_batch``: the
    optimizer step's labelled tokens), with only the labelled positions' hidden states sent through the LM head.

    On CPU trl's fused head projects every position (it gathers the labelled ones with Triton only), so with
    assistant-only loss the prompt and padding positions cost a vocabulary-wide matmul and log-softmax for nothing.
    """
    import torch
    import torch.nn.functional as F
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.base_model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False).last_hidden_state
    labels = inputs["labels"][:, 1:]
    trained = labels != -100
    logits = causal.get_output_embeddings()(hidden[:, :-1][trained])
    count = trained.sum() if num_items_in_batch is None else num_items_in_batch
    return F.cross_entropy(logits.float(), labels[trained], reduction="sum") / torch.as_tensor(count).clamp(min=1)


def keep_adapter_fp32_on_cpu(model) -> None:
    """On CPU, cast trainable (LoRA) weights back to fp32.

    trl casts them to bf16 over a quantized base (the QLoRA paper's advice for GPUs); a CPU without
    fast bf16 matmul runs those through torch's reference kernel, about 1.8× slower.
    """
    import torch
    if torch.cuda.is_available():
        return
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def add_lora(model, config: RunConfig):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    if config.load_in_4bit:
        import bitsandbytes as bnb
        for module in model.modules():
            if isinstance(module, bnb.nn.Linear4bit):
                # bitsandbytes repacks CPU weights for inference on the first eval forward; the repacked
                # matmul has no backward, so gradients through the base would silently go wrong afterwards.
                module.support_avx512bf16_for_cpu = False
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.lora_target_modules, bias="none", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise TuneloopError(f"lora_target: {exc}; use all-linear or names of the model's linear layers") from exc


def to_dataset(tokenized):
    from datasets import Dataset
    return Dataset.from_dict({"input_ids": tokenized.input_ids, "assistant_masks": tokenized.assistant_masks,
                              "length": tokenized.lengths})


def run_training(ws: Workspace, run_id: int, *, resume: bool = False) -> Run:
    """Train a registered run in this process; returns it with its final status. Never raises for a
    failed run: the error (with what to do) is stored on the run."""
    run = get_run(ws, run_id)
    config = run.config
    log = MetricsLog(run.metrics_path)
    stop_flag: dict[str, bool] = {}
    previous = signal.signal(signal.SIGTERM, lambda *_: stop_flag.update(stop=True))
    previous_interrupt = signal.signal(signal.SIGINT, lambda *_: interrupt(stop_flag))
    if is_main_process():
        update_run(ws, run.id, status="running", pid=os.getpid(), pid_started=_process_start_time(os.getpid()),
                   host=socket.gethostname(), started_at=_now(), heartbeat_at=_now(), attempts=run.attempts + 1,
                   error=None)
    try:
        status, summary = train_stage(ws, run, config, log, stop_flag, resume=resume, stage=stage_for(config))
    except BaseException as exc:  # the job must always leave a status behind
        traceback.print_exc()
        sys.stdout.flush()
        message = failure_message(exc, config, run)
        if is_main_process():
            update_run(ws, run.id, status="failed", error=message, finished_at=_now())
            start_next_queued(ws)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return get_run(ws, run.id)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_interrupt)
    if is_main_process():
        merge_run_json(ws, run.id, "metrics", summary)
        update_run(ws, run.id, status=status, finished_at=_now(), heartbeat_at=_now())
        start_next_queued(ws)
    return get_run(ws, run.id)


def interrupt(stop_flag: dict) -> None:
    """Ctrl-C in ``python -m training run``: the first stops the run as the tab's Stop does (a checkpoint at the
    end of this step, status stopped, resumable); a second stops it at once."""
    if stop_flag.get("stop"):
        raise KeyboardInterrupt
    stop_flag["stop"] = True
    print("[tuneloop] stopping after this step (a checkpoint is saved, resume with --resume); "
          "Ctrl-C again stops at once", flush=True)


def failure_message(exc: BaseException, config: RunConfig, run: Run) -> str:
    """What went wrong, in words a user can act on; out-of-memory gets concrete suggestions."""
    from training.registry import log_tail
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TuneloopError):
        return str(exc)
    if isinstance(exc, MemoryError) or any(m in text.lower() for m in OOM_MARKERS) \
            or type(exc).__name__ == "OutOfMemoryError":
        tips = [f"lower micro_batch_size (now {config.micro_batch_size}; try {max(1, config.micro_batch_size // 2)}"
                f" and raise gradient_accumulation_steps to keep the effective batch)",
                f"lower sequence_len (now {config.sequence_len}; try {max(64, config.sequence_len // 2)})"]
        if not config.load_in_4bit:
            tips.append("load the base in 4-bit: adapter: qlora, load_in_4bit: true")
        if not config.gradient_checkpointing:
            tips.append("turn on gradient_checkpointing (less memory, about 30% slower)")
        tail = log_tail(run, 10)
        return ("the run ran out of memory. Try:\n  - " + "\n  - ".join(tips)
                + (f"\nLast log lines:\n{tail}" if tail else ""))
    if isinstance(exc, KeyboardInterrupt):
        return "the run was interrupted (Ctrl-C); resume it from its last checkpoint"
    return f"the run failed with an unexpected error: {text}. The log (train.log in {run.run_dir}) has the details."


class Stage(ABC):
    """What a training stage supplies to the shared job skeleton (``train_stage``): its base model,
    data and trainer, and the figures only it knows. The skeleton does the rest: threads and seed,
    callbacks, resume from a checkpoint, the graceful stop, saving the adapter, ROUGE-L, the summary."""

    name = "training"

    def base_model(self, ws: Workspace, run: Run, config: RunConfig):
        """The resolved base model (training.models.ResolvedModel) the stage trains over."""
        from training.models import resolve_base_model
        print(f"[tuneloop] run #{run.id}: resolving base model {config.base_model}", flush=True)
        return resolve_base_model(config.base_model, ws)

    @abstractmethod
    def build(self, ws: Workspace, run: Run, config: RunConfig, resolved, log, callback) -> tuple[Any, Any, dict]:
        """(trainer, tokenizer, summary so far); ``callback(log)`` is the job's metrics/stop callback."""

    def test_records(self, ws: Workspace, config: RunConfig) -> list:
        """The test conversations ROUGE-L is measured on at the end."""
        from training.data import load_split_data
        return load_split_data(ws, config.datasets)["test"]

    def before_training(self, trainer, run: Run, log, summary: dict) -> None:
        """On a fresh start (not a resume), before the first step."""

    def after_training(self, trainer, run: Run, summary: dict) -> None:
        """Figures from the training log, once training ended or stopped."""

    def final_evaluation(self, trainer, run: Run, log, summary: dict) -> None:
        """The evaluation at the end of a finished run."""

    def trained_model(self, trainer):
        """The model whose adapter is the run's result."""
        return trainer.model


def train_stage(ws: Workspace, run: Run, config: RunConfig, log, stop_flag: dict, *, resume: bool,
                stage: Stage) -> tuple[str, dict[str, Any]]:
    """Train one run with ``stage``'s data and trainer; returns (status, summary) for the registry."""
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(config.cpu_threads)
    torch.manual_seed(config.seed)
    log.phase("loading the model")
    resolved = stage.base_model(ws, run, config)
    if is_main_process():
        update_run(ws, run.id, base_revision=resolved.revision)
    trainer, tokenizer, summary = stage.build(ws, run, config, resolved, log,
                                              lambda metrics_log: _callbacks(ws, run, metrics_log, stop_flag))
    keep_adapter_fp32_on_cpu(trainer.model)   # before train() builds the optimizer over them
    checkpoint = last_checkpoint(run) if resume else None
    if checkpoint is not None:
        log.drop_after(int(checkpoint.name.split("-")[-1]))
    else:
        stage.before_training(trainer, run, log, summary)
    print(f"[tuneloop] {stage.name}{' from ' + checkpoint.name if checkpoint else ''}", flush=True)
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    state = trainer.state
    summary.update(last_step=state.global_step, max_steps=state.max_steps,
                   train_loss=_num(output.training_loss), peak_rss_mb=peak_rss_mb(), peak_gpu_mb=_peak_gpu_mb())
    stage.after_training(trainer, run, summary)
    if stop_flag.get("stop"):
        ckpt = last_checkpoint(get_run(ws, run.id))
        merge_run_json(ws, run.id, "artefacts", {"checkpoint": str(ckpt) if ckpt else ""})
        return "stopped", summary
    stage.final_evaluation(trainer, run, log, summary)
    if is_main_process():
        model = stage.trained_model(trainer)
        log.phase("saving the adapter")
        save_adapter(model, tokenizer, run.adapter_dir)
        ckpt = last_checkpoint(get_run(ws, run.id))
        merge_run_json(ws, run.id, "artefacts", {"adapter": str(run.adapter_dir),
                                                 "checkpoint": str(ckpt) if ckpt else ""})
        test = stage.test_records(ws, config)
        if config.rouge_test_samples and test:
            from training.quality import rouge_base_vs_tuned
            rouge = rouge_base_vs_tuned(model, tokenizer, test[: config.rouge_test_samples],
                                        progress=lambda done, total: log.phase("ROUGE-L answers", done, total))
            # Figures only: the example's text (a test prompt and its answers) stays in the database, with its data.
            log.write({"step": state.global_step, "event": "rouge",
                       **{k: v for k, v in rouge.items() if k != "rouge_example"}})
            summary.update(rouge)
    return "finished", summary


class SftStage(Stage):
    """Supervised fine-tuning: LoRA on the split's train conversations, assistant tokens only."""

    name = "training"

    def build(self, ws, run, config, resolved, log, callback):
        from training.data import apply_system_prompt, load_split_data, system_prompt_summary, tokenize_records
        from training.models import load_model_and_tokenizer, load_tokenizer, source_quantization
        from training.preflight import longest_batch_tokens, plan_memory

        data = load_split_data(ws, config.datasets)
        tokenizer = load_tokenizer(resolved)
        # the run's system prompt, for training and for its own answers at the end alike
        train, val, self.test = (apply_system_prompt(tokenizer, data[p], config) for p in ("train", "val", "test"))
        print(f"[tuneloop] system prompt: {system_prompt_summary(tokenizer, data['train'], config)[0]}", flush=True)
        train_tok = tokenize_records(tokenizer, train, config.sequence_len)
        val_tok = tokenize_records(tokenizer, val, config.sequence_len) if val else None
        if not train_tok.input_ids:
            raise TuneloopError("the training split has no conversation with an assistant answer to learn from")
        print(f"[tuneloop] {len(train_tok.input_ids)} training conversations, {train_tok.num_tokens} tokens; "
              f"{len(val_tok.input_ids) if val_tok else 0} validation", flush=True)
        # The same choice preflight showed: adapter and checkpointing from the memory estimate (fit_to_memory).
        plan = plan_memory(config, resolved.path, longest_batch_tokens=longest_batch_tokens(config, train_tok.lengths),
                           source_quantization=source_quantization(resolved))
        config = plan.config
        for choice in plan.choices:
            print(f"[tuneloop] {choice}", flush=True)
        model, _ = load_model_and_tokenizer(resolved, load_in_4bit=config.load_in_4bit)
        model = add_lora(model, config)
        trainer = build_trainer(config, model, tokenizer, to_dataset(train_tok),
                                to_dataset(val_tok) if val_tok and val_tok.input_ids else None,
                                run.checkpoints_dir, [callback(log)])
        return trainer, tokenizer, {"train_conversations": len(train_tok.input_ids),
                                    "train_tokens": train_tok.num_tokens, "trained_adapter": config.adapter,
                                    "gradient_checkpointing": config.gradient_checkpointing,
                                    "choices": plan.choices}

    def test_records(self, ws, config):
        return self.test

    def before_training(self, trainer, run, log, summary):
        if trainer.eval_dataset is not None and not any(r.get("event") == "base_eval" for r in read_metrics(run)):
            # LoRA starts as a no-op, so this is the base model's loss on the validation split.
            log.phase("base-model evaluation", 0, len(trainer.eval_dataset))
            base = trainer.evaluate()["eval_loss"]
            log.write({"step": 0, "event": "base_eval", "eval_loss": round(base, 5), "peak_rss_mb": peak_rss_mb()})
            summary["base_eval_loss"] = round(base, 5)

    def after_training(self, trainer, run, summary):
        self.evals = [r for r in read_metrics(run) if r.get("event") == "eval"]
        if self.evals:
            summary["best_eval_loss"] = min(r["eval_loss"] for r in self.evals)

    def final_evaluation(self, trainer, run, log, summary):
        step = trainer.state.global_step
        if self.evals and self.evals[-1]["step"] == step and not trainer.args.load_best_model_at_end:
            summary["final_eval_loss"] = self.evals[-1]["eval_loss"]
        elif trainer.eval_dataset is not None:
            log.phase("final evaluation", 0, len(trainer.eval_dataset))
            final = trainer.evaluate()["eval_loss"]
            log.write({"step": step, "event": "final_eval", "eval_loss": round(final, 5), "peak_rss_mb": peak_rss_mb()})
            summary["final_eval_loss"] = round(final, 5)


def stage_for(config: RunConfig) -> Stage:
    """The stage a config's ``stage`` names: SFT, DPO or KTO."""
    if config.stage == "dpo":
        from training.dpo import DpoStage
        return DpoStage()
    if config.stage == "kto":
        from training.kto import KtoStage
        return KtoStage()
    return SftStage()


def save_adapter(model, tokenizer, target: Path) -> Path:
    """The LoRA adapter (adapter_config.json + adapter_model.safetensors) and tokenizer, written atomically."""
    tmp = target.parent / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def metrics_summary_line(run: Run) -> str:
    m = run.metrics
    parts = [f"run #{run.id} {run.status}"]
    for key in ("last_step", "train_loss", "base_eval_loss", "final_eval_loss", "rouge_l_base", "rouge_l_tuned"):
        if m.get(key) is not None:
            value = m[key]
            parts.append(f"{key}={value:.4f}" if isinstance(value, float) and not math.isnan(value) else f"{key}={value}")
    return " · ".join(parts)
