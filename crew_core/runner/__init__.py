"""The runner: the crew's background thread, which does the store and backend I/O for the engine.

It reads the inbox, writes task records, starts and kills workers through their backends, and feeds
what happened to the engine (``crew_core.engine``); a named crew's recovery lives here too."""
