"""``python -m crew_core``: the same as the ``crew`` command."""

from crew_core.cli import main

raise SystemExit(main())
