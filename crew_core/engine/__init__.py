"""The engine: what the controller decides about jobs and workers, given events and ``now``.

The ledger owns every job's state, the supervisor every worker's life, the dispatcher which job goes
where. No threads, clock, randomness or store I/O here (checked by import-linter): the runner
(``crew_core.runner``) feeds the engine and carries out what it decides. (The dispatcher and the
supervisor still call the manager back for their writes and launches; engine v2 turns those calls
into instructions they return.)"""
