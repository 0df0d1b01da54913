"""``python -m curation.review``: the Review tab's admin work, headless."""
from curation.review.cli import main

raise SystemExit(main())
