"""The training half of a run's model card: what the adapter is and what it was made from.

Title, base model (its public hub id and revision, and where the weights it was trained on came
from), the data (dataset version, content hash and lineage; for DPO the preference version and the
SFT run it started from), the code and packages, the training figures and the config. These facts
are fixed once the run finished. Evaluation adds its figures after them (``evaluation.model_card``);
an export writes this half alone when no evaluation has written the card yet, so every exported
adapter carries one.

Example::

    lines = training_card_lines(ws, get_run(ws, 3))
    write_training_card(ws, 3)                   # runs/run-3/adapter/README.md, only if none is there
"""
from __future__ import annotations

from pathlib import Path

from core.workspace import Workspace, atomic_write
from training.registry import Run, get_run

CARD_FILE = "README.md"
TUNELOOP_MARK = "made with Tuneloop"      # how a card of ours is told from PEFT's placeholder


def training_card_lines(ws: Workspace, run: Run) -> list[str]:
    """The card's sections up to and including Training, as Markdown lines."""
    import yaml
    from curation.data.versions import get_version, lineage
    from training.export import public_base

    base = public_base(run)
    lines = [f"# {run.name}", "",
             f"A {'DPO' if run.config.stage == 'dpo' else 'supervised (SFT)'} LoRA adapter {TUNELOOP_MARK} "
             f"(run #{run.id}, status {run.status}).", "",
             "## Base model", "",
             f"- {base.name}" + (f" (revision {base.revision})" if base.revision else "")
             + (f", named `{run.base_model}` in the run" if base.name != run.base_model else ""),
             f"- trained on {base.weights}",
             f"- adapter: {run.config.adapter}, rank {run.config.lora_r}, alpha {run.config.lora_alpha}, "
             f"4-bit base: {'yes' if run.config.load_in_4bit else 'no'}", ""]
    lines += ["## Data", ""]
    if run.dataset_version is not None:
        version = get_version(ws, run.dataset_version)
        lines += [f"- dataset version: {version.name}, {version.num_records} records, content hash "
                  f"`{version.content_hash[:16]}`", "- lineage (newest first):"]
        lines += [f"  - {v.describe()}" for v in lineage(ws, version.id)]
    else:
        lines.append(f"- dataset: {run.dataset} (hash `{(run.dataset_hash or '')[:16]}`)")
    if run.config.stage == "dpo":
        m = run.metrics
        source = (get_version(ws, run.preference_version).name if run.preference_version is not None
                  else run.config.preferences)
        lines.append(f"- preference pairs: from {source} (hash `{(run.preference_hash or '')[:16]}`) — "
                     f"{m.get('train_pairs', '?')} trained on, {m.get('val_pairs', '?')} for evaluation, "
                     f"{m.get('test_pairs_left_out', '?')} from test prompts left out; started from run "
                     f"#{run.parent_run_id if run.parent_run_id is not None else run.config.sft_run}")
    if run.config.stage == "kto":
        m = run.metrics
        source = (get_version(ws, run.preference_version).name if run.preference_version is not None
                  else run.config.kto_data)
        lines.append(f"- KTO examples: from {source} (hash `{(run.preference_hash or '')[:16]}`) — "
                     f"{m.get('train_examples', '?')} trained on ({m.get('desirable', '?')} desirable, "
                     f"{m.get('undesirable', '?')} undesirable), {m.get('val_examples', '?')} for evaluation, "
                     f"{m.get('test_examples_left_out', '?')} from test prompts left out; started from run "
                     f"#{run.parent_run_id if run.parent_run_id is not None else run.config.sft_run}")
    lines += ["", "## Training", "", f"- code version: {run.code_version or 'unknown'}",
              "- packages: " + ", ".join(f"{k} {v}" for k, v in sorted(run.packages.items())),
              "- summary: " + ", ".join(f"{k} {v}" for k, v in run.metrics.items()
                                        if isinstance(v, (int, float)) and not isinstance(v, bool)),
              "", "```yaml", yaml.safe_dump(run.config.to_dict(), sort_keys=False).strip(), "```", ""]
    return lines


def write_training_card(ws: Workspace, run_id: int | str) -> Path:
    """Write the training half as README.md beside the adapter, unless Tuneloop's card (with evaluation
    figures) is there already; PEFT's placeholder card from ``save_pretrained`` is replaced. Returns the path."""
    run = get_run(ws, run_id)
    path = run.adapter_dir / CARD_FILE
    if not path.is_file() or TUNELOOP_MARK not in path.read_text(encoding="utf-8"):
        text = "\n".join(training_card_lines(ws, run) + [
            "## Evaluation", "", f"Not evaluated yet: `python -m evaluation auto --run {run.id} --split VERSION` "
            f"adds the figures to this card.", ""])
        atomic_write(path, text.encode("utf-8"))
    return path
