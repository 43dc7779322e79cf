"""``crew.summary()``: per-worker counts as data and as a table."""

from __future__ import annotations

from crew_core import WorkerLaunchError
from crew_core.testing import jobs


def test_summary_counts_jobs_errors_crashes_and_launches(make_crew):
    crew = make_crew(max_tries=1)
    crew.recruit(workers=1)
    for n in range(3):
        crew.send(jobs.double, args=(n,))
    crew.send(jobs.fail, args=("on purpose",))
    crew.send(jobs.die)  # kills its worker: a crash (max_tries=1), and a second launch
    results = list(crew.results(timeout=60))
    assert sorted(r.status for r in results) == ["crash", "error", "success", "success", "success"]
    crew.send(jobs.double, args=(4,))  # the dead worker is launched again for it
    assert crew.receive(timeout=60).value == 8
    crew.recruit(workers=1, tags="gpu", python="/nonexistent/python3")  # every launch refused
    gpu = crew.send(jobs.double, args=(1,), tags="gpu")
    while True:
        try:
            if crew.receive(timeout=60).id == gpu:
                break
        except WorkerLaunchError:
            continue  # the refused launch is raised once
    summary = crew.summary()
    first, second = summary
    assert (first["worker"], first["class"], first["tags"]) == ("subprocess-1", "subprocess", "")
    assert (first["jobs"], first["errors"], first["crashes"], first["launches"]) == (5, 1, 1, 2)
    assert first["busy_s"] >= 0 and first["state"] in ("up", "down")
    assert (second["tags"], second["jobs"], second["launches"], second["refused"]) == ("gpu", 0, 0, 1)
    assert summary.totals["jobs"] == 5 and summary.totals["crashes"] == 1 and summary.totals["refused"] == 1
    table = str(summary).splitlines()
    assert table[0].split() == ["worker", "class", "tags", "state", "launches", "refused", "jobs", "errors",
                                "timeouts", "crashes", "busy_s"]  # fmt: skip
    assert table[-1].startswith("total") and len({len(line) for line in table[:1] + table[2:4]}) == 1  # aligned
    assert len(repr(crew)) < 200  # repr stays short
