"""The user's API: :class:`Crew`, :class:`CrewExecutor`, the joblib backend, ``map`` and its progress.

A thin front over the runner; ``crew_core/__init__.py`` re-exports the public names."""
