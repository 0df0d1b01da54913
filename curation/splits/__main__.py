"""``python -m curation.splits``: build a leak-free train/val/test split."""
from curation.splits.cli import main

raise SystemExit(main())
