"""A short run on the real default model (SmolLM2-135M-Instruct) over the shortest demo conversations, for the
end-to-end tests that need a trained adapter on it (training, GGUF export)."""
from __future__ import annotations

from pathlib import Path

from curation.data.demo import demo_records
from curation.data.formats import write_jsonl
from training import registry as R
from training.config import preset_config
from training.job import run_training


def train_default_run(ws, folder: Path, *, seed: int, steps: int, val: int, eval_steps: int):
    """A finished ``steps``-step run of the Quick CPU demo preset on the 8 shortest of 60 demo conversations
    (``val`` of them also the val split), written under ``folder``; fails the test if the run did not finish."""
    shortest = sorted(demo_records(60, seed=seed), key=lambda r: len(r.text()))[:8]
    write_jsonl(shortest, folder / "split" / "train.jsonl")
    write_jsonl(shortest[:val], folder / "split" / "val.jsonl")
    config = preset_config("Quick CPU demo", datasets=str(folder / "split"), micro_batch_size=4, max_steps=steps,
                           learning_rate=1e-3, lr_scheduler="constant", warmup_ratio=0.0, eval_steps=eval_steps,
                           save_steps=steps, rouge_test_samples=0, gradient_checkpointing=False)
    run = run_training(ws, R.create_run(ws, config).id)
    assert run.status == "finished", run.error
    return run
