"""``python -m curation.pii``: scrub personal data from a file or a workspace version."""
from curation.pii.cli import main

raise SystemExit(main())
