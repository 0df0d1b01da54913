"""Training: run configs, base-model resolution, the QLoRA job, the run registry."""
