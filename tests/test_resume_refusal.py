"""A resumed named crew reads a refusal as its writer's word about its own task only.

A worker that refuses a record planted under its prefix says so under a key of its own
(``inbox/refused.<worker>.<launch>.<seq>.<nonce>``). If the planted record carried the number of
another worker's running task, a controller that resumes the crew must not take that refusal as
the task's answer: the task is still running, and running its job again would run it twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from crew_core import Crew
from crew_core.testing import jobs
from crew_core.testing.polling import wait_for
from crew_core.wire import protocol
from crew_local import LocalStore


def test_a_resumed_crew_ignores_a_refusal_of_another_workers_task_number(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    store_dir, runs, gate, started = tmp_path / "store", tmp_path / "runs", tmp_path / "gate", tmp_path / "started"
    report = tmp_path / "first.json"
    store_dir.mkdir()
    first = textwrap.dedent(f"""
        import json, os
        from crew_core import Crew
        from crew_core.testing import jobs
        from crew_core.testing.polling import wait_for
        crew = Crew(store={str(store_dir)!r}, name="resumed", worker_classes=["subprocess"])
        crew.recruit(workers=2, detached=True)
        crew.launch()
        job = crew.send(jobs.started_then_mark_once_open, args=({str(started)!r}, {str(gate)!r}, {str(runs)!r}, "job"))
        wait_for(lambda: os.path.exists({str(started)!r}), timeout=60, what="the job to begin")
        m = crew._manager
        with m.lock:
            [task] = m.ledger.tasks.values()
            other = next((r.name, r.incarnation) for r in m.records.values() if r.name != task.worker)
        json.dump({{"seq": task.seq, "other": other}}, open({str(report)!r}, "w"))
        os.kill(os.getpid(), 9)  # the controller dies; its detached workers go on
    """)
    with open(tmp_path / "first.log", "wb") as log:  # a file: detached workers keep a pipe open
        subprocess.run([sys.executable, "-c", first], timeout=300, stdout=log, stderr=log)
    assert report.exists(), (tmp_path / "first.log").read_text()
    facts = json.loads(report.read_text())
    (other, incarnation), seq = facts["other"], facts["seq"]
    # Someone who can write the store plants a record under the other worker's prefix, numbered as
    # the running task: the other worker refuses it, under its own name.
    store = LocalStore(store_dir)
    prefix = protocol.worker_prefix("resumed", other, incarnation)
    store.put(protocol.task_key(prefix, seq), b"planted")
    store.notify(protocol.worker_channel(prefix))
    inbox = store_dir / "resumed" / "inbox"
    wait_for(lambda: any(name.startswith(f"refused.{other}.") for name in os.listdir(inbox)), timeout=60,
             what="the other worker's refusal")  # fmt: skip
    store.close()
    with Crew(store=str(store_dir), name="resumed", worker_classes=["subprocess"]) as crew:
        assert crew.resumed
        gate.touch()
        results = list(crew.results(timeout=120))
    assert [result.status for result in results] == ["success"]
    assert jobs.runs_of(runs) == {"job": 1}, "the job ran twice"
