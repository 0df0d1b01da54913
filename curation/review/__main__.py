"""``python -m curation.review``: the Review tab's admin work, headless."""
from curation.review.workflow import main

raise SystemExit(main())
