"""``python -m crew_core``: the same as the ``crew`` command."""

from .cli import main

raise SystemExit(main())
