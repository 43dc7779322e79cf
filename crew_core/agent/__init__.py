"""The agent: what runs inside every worker: its task loop, its task feed, the sandbox around a job.

Started by ``crew worker`` (``crew_core.agent.runtime.run_worker``); it talks to its controller only
through the store."""
