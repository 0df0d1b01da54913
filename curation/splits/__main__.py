"""``python -m curation.splits``: build a leak-free train/val/test split."""
from curation.splits.build import main

raise SystemExit(main())
