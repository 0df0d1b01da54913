"""``python -m curation.dedup``: exact and near-duplicate removal."""
from curation.dedup.clusters import main

raise SystemExit(main())
