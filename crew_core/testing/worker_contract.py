"""The contract every :class:`~crew_core.Worker` class must meet, as a pytest suite to subclass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crew_core import (
    Crew,
    JobCancelledError,
    JobTimeoutError,
    WorkerCrashedError,
    WorkerInitError,
    WorkerLaunchError,
)
from crew_core.durable.leftovers import end_backend_jobs, find_backend_jobs, find_crews
from crew_core.plugin import Store, Worker
from crew_core.plugin.registry import default_plugins, store_from_config, store_spec
from crew_core.testing import jobs
from crew_core.testing.leftover_workers import StartedWorkers
from crew_core.testing.polling import wait_for
from crew_core.wire import protocol


class WorkerContract:
    """Subclass and provide a ``worker_class`` fixture (a registered name or a class).

    Optional fixtures: ``worker_options`` (keyword options for ``recruit``), ``refused_options``
    (options the backend refuses at launch, e.g. a queue that does not exist; None skips those
    tests), ``crew_store``
    (what ``Crew(store=...)`` gets; the default is a local folder of the test's), and ``timeout_scale`` (multiply
    the generous waiting ceilings for slow backends). Every test runs real worker processes, and
    fails if any it started still runs after it (see :meth:`started_workers`).
    """

    @pytest.fixture
    def worker_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def refused_options(self) -> dict[str, Any] | None:
        return None

    @pytest.fixture
    def crew_store(self, tmp_path: Any) -> str | Store:
        return str(tmp_path / "store")  # a local folder the tests can still look into after close()

    @pytest.fixture
    def timeout_scale(self) -> float:
        return 1.0

    @pytest.fixture
    def crash_cause(self) -> str | None:
        """What a crash error says of a worker whose process exited with code 13 (None: the
        backend does not say): the exit code by default."""
        return "exit code 13"

    @pytest.fixture
    def unreachable_worker(self) -> Worker | None:
        """A worker of your class that looks started (it has a backend id) but whose backend cannot
        be reached (a dead endpoint); None (the default) skips the test that needs it."""
        return None

    @pytest.fixture
    def surviving_options(self, worker_options: dict[str, Any]) -> dict[str, Any]:
        """Options under which a worker outlives its controller's process (until the lease times out),
        as remote workers do; a local class that ends with its parent by default says how not to."""
        return worker_options

    @pytest.fixture
    def owns_process(self) -> bool:
        """False for workers that run inside a process of the user's (an executor's thread): jobs
        there cannot be interrupted or have their output captured, and are not tested for it."""
        return True

    @pytest.fixture(autouse=True)
    def started_workers(
        self,
        worker_class: str | type[Worker],
        worker_options: dict[str, Any],
        surviving_options: dict[str, Any],
        timeout_scale: float,
    ) -> Iterator[StartedWorkers]:
        """Fail a test that leaves a worker running, and end that worker (a leak is a failure).

        Records the crews of ``make_crew`` and the orphaned crews of :meth:`_orphan`; after the
        test (and after ``make_crew`` closed its crews) waits up to 60 s for their workers to be
        down by ``running()``, for ``find()`` to return none of an orphaned crew's jobs, and for
        no process on this machine to carry one of their labels. Depending on the option
        fixtures keeps the backends (and the environment ``find()`` reads) up until then.
        """
        started = StartedWorkers(_lookup(worker_class))
        yield started
        leaks = started.end_all(timeout=60 * timeout_scale)
        if leaks:
            pytest.fail("the test left workers running:\n  " + "\n  ".join(leaks), pytrace=False)

    @pytest.fixture
    def make_crew(
        self, started_workers: StartedWorkers, worker_class: Any, crew_store: Any, worker_options: Any
    ) -> Iterator[Callable[..., Crew]]:
        # Depending on worker_options keeps the backend its fixtures start alive until crews close.
        crews: list[Crew] = []

        def make(**settings: Any) -> Crew:
            settings.setdefault("lease_timeout", 60)  # a plugin that fails to stop a worker leaks it a minute
            crew = started_workers.add_crew(Crew(store=crew_store, worker_classes=[worker_class], **settings))
            crews.append(crew)
            return crew

        yield make
        for crew in crews:
            crew.close()

    def _wait(self, condition: Callable[[], Any], scale: float, what: str, timeout: float = 60.0) -> Any:
        return wait_for(condition, timeout=timeout * scale, what=what)

    # ------------------------------------------------------------------ outcomes
    def test_jobs_return_values_errors_and_warnings(
        self, make_crew: Callable[..., Crew], worker_options: dict[str, Any], timeout_scale: float
    ) -> None:
        crew = make_crew()
        crew.recruit(workers=2, **worker_options)
        ok = crew.send(jobs.double, args=(21,))
        bad = crew.send(jobs.fail, args=("broken on purpose",))
        warned = crew.send(jobs.warn_and_return, args=("heads up", "value"))
        results = {r.id: r for r in crew.results(timeout=120 * timeout_scale)}
        assert results[ok].status == "success" and results[ok].value == 42
        assert results[bad].status == "error" and isinstance(results[bad].error, ValueError)
        assert "broken on purpose" in results[bad].traceback and "fail" in results[bad].traceback
        assert results[warned].value == "value" and results[warned].warnings == ["heads up"]
        assert {r.worker for r in results.values()} <= set(crew.workers)

    def test_the_crew_secret_reaches_the_worker_in_its_environment_only(
        self, make_crew: Callable[..., Crew], worker_options: dict[str, Any], timeout_scale: float
    ) -> None:
        """``start`` must pass ``launch.secrets`` (the launch's key) and nothing else carries it."""
        crew = make_crew()
        crew.recruit(workers=1, **worker_options)
        crew.send(jobs.secret_exposure)
        result = crew.receive(timeout=120 * timeout_scale)
        assert result is not None, (
            "the worker never answered: does start() pass launch.secrets (CREW_SECRET) to the process?"
        )
        variable, command = result.get()
        assert variable is None, "the worker left CREW_SECRET in the environment jobs see"
        keys = crew._manager.keys
        shown = [keys.root.hex(), *(keys.launch_key(result.worker or "", n).hex() for n in range(1, 4))]
        assert not any(key in command for key in shown), "a crew's or a launch's key is on the worker's command line"

    def test_worker_survives_a_job_that_raises_or_exits(
        self, make_crew: Callable[..., Crew], worker_options: dict[str, Any], timeout_scale: float
    ) -> None:
        crew = make_crew()
        [worker] = crew.recruit(workers=1, **worker_options)
        crew.send(jobs.call_exit, args=(3,))
        first = crew.receive(timeout=120 * timeout_scale)
        assert first is not None and first.status == "error" and isinstance(first.error, SystemExit)
        crew.send(jobs.double, args=(1,))
        second = crew.receive(timeout=120 * timeout_scale)
        assert second is not None and second.value == 2 and second.worker == worker.name
        assert first.tries == second.tries == 1

    # ------------------------------------------------------------------ lifecycle
    def test_idle_timeout_ends_the_worker(
        self, make_crew: Callable[..., Crew], worker_options: dict[str, Any], timeout_scale: float
    ) -> None:
        crew = make_crew()
        [worker] = crew.recruit(workers=1, idle_timeout=0.5, **worker_options)
        assert not worker.up()
        crew.send(jobs.double, args=(2,))
        result = crew.receive(timeout=120 * timeout_scale)
        assert result is not None and result.value == 4
        self._wait(lambda: not worker.up(), timeout_scale, "the idle worker to exit")
        assert not worker.stuck()
        crew.send(jobs.double, args=(3,))  # a down worker is launched again on demand
        result = crew.receive(timeout=120 * timeout_scale)
        assert result is not None and result.value == 6

    def test_shutdown_stops_idle_workers_through_the_store(
        self, make_crew: Callable[..., Crew], worker_options: dict[str, Any], timeout_scale: float
    ) -> None:
        crew = make_crew()
        workers = crew.recruit(workers=2, **worker_options)
        crew.launch()
        assert all(w.up() for w in workers)
        assert set(crew.stop(idle_only=True)) == set(workers)
        self._wait(lambda: not any(w.up() for w in workers), timeout_scale, "workers to stop")

    def test_close_leaves_no_worker_running(
        self, make_crew: Callable[..., Crew], worker_options: dict[str, Any], timeout_scale: float, tmp_path: Path
    ) -> None:
        """Judged by the store, not by the plugin's own ``running()``: after close() nothing writes."""
        crew = make_crew(heartbeat_interval=0.2, heartbeat_timeout=60)
        workers = crew.recruit(workers=2, **worker_options)
        started = tmp_path / "started"
        crew.send(jobs.touch_then_sleep, args=(str(started), 60))  # busy, beating every 0.2 s
        crew.launch()
        self._wait(started.exists, timeout_scale, "the job to start")
        for _ in range(2):
            crew.send(jobs.double, args=(1,))
        assert len([crew.receive(timeout=120 * timeout_scale) for _ in range(2)]) == 2  # the other one is up
        crew.close()
        store, prefix = crew.store, f"{crew.id}/"
        assert store.list(prefix) == [], "close() left objects of the crew in the store"
        deadline = time.monotonic() + 3.0 * timeout_scale  # 15 heartbeat intervals of the busy worker
        while time.monotonic() < deadline:
            written = store.list(prefix)
            assert written == [], f"a worker still writes to the store after close(): {written}"
            time.sleep(0.1)
        # A backend may end jobs asynchronously (scancel, terminate_job): wait for it to say so too.
        self._wait(lambda: not any(w.backend.is_running() for w in workers), timeout_scale, "the backend to end them")

    # ------------------------------------------------------------------ launches the backend refuses
    def test_a_refused_launch_is_a_launch_error_and_the_job_gives_up(
        self, make_crew: Callable[..., Crew], refused_options: dict[str, Any] | None, timeout_scale: float
    ) -> None:
        if refused_options is None:
            pytest.skip("this backend has no launch it refuses (no refused_options fixture)")
        crew = make_crew(max_tries=2)
        [worker] = crew.recruit(workers=1, **refused_options)
        with pytest.raises(WorkerLaunchError) as refused:
            crew.launch()
        assert str(refused.value).strip(), "a refused launch must say what to fix"
        assert not worker.up()
        job = crew.send(jobs.double, args=(1,))
        result = None
        while result is None:
            try:
                result = crew.receive(timeout=120 * timeout_scale)
            except WorkerLaunchError:
                continue  # the first failure in a row is raised once
        assert (result.id, result.status) == (job, "error") and isinstance(result.error, WorkerLaunchError)

    def test_start_many_is_all_or_nothing(
        self,
        make_crew: Callable[..., Crew],
        worker_options: dict[str, Any],
        refused_options: dict[str, Any] | None,
        timeout_scale: float,
    ) -> None:
        """A good and a refused worker started together: neither may be left running (judged by the store)."""
        if refused_options is None:
            pytest.skip("this backend has no launch it refuses (no refused_options fixture)")
        crew = make_crew(heartbeat_interval=0.2)
        good, bad = crew.recruit(workers=1, **worker_options)[0], crew.recruit(workers=1, **refused_options)[0]
        with pytest.raises(WorkerLaunchError):
            crew.launch()  # one start_many call for both: the backend's class is the same
        assert not good.up() and not bad.up()
        incarnation = crew._manager.records[good.name].incarnation
        inbox = protocol.inbox_prefix(crew.id)

        def last_beat() -> int:  # read in the store: the crew itself no longer looks for this worker
            entries = [protocol.parse_inbox_key(key) for key in crew.store.list(inbox)]
            return max([e.beat for e in entries if e and e.kind == "beat" and e.worker == good.name
                        and e.incarnation == incarnation], default=0)  # fmt: skip

        seen = last_beat()  # a first beat, written before it was stopped, is fine
        deadline = time.monotonic() + 3 * timeout_scale  # 15 heartbeat intervals
        while time.monotonic() < deadline:
            assert last_beat() <= seen, "the good worker of a failed start_many runs on: it must be stopped too"
            time.sleep(0.1)

    def test_a_job_that_outlasts_several_status_checks_is_not_taken_for_dead(
        self,
        make_crew: Callable[..., Crew],
        worker_class: str | type[Worker],
        worker_options: dict[str, Any],
        timeout_scale: float,
    ) -> None:
        crew = make_crew()
        [worker] = crew.recruit(workers=1, **worker_options)
        seconds = min(3 * worker.backend.status_interval + 0.5, 20.0)
        job = crew.send(jobs.sleep_then, args=(seconds, "survived"))
        result = crew.receive(timeout=(seconds + 120) * timeout_scale)
        assert result is not None and (result.id, result.value, result.tries) == (job, "survived", 1)

    def test_workers_leave_by_themselves_when_their_controller_dies(
        self,
        started_workers: StartedWorkers,
        worker_class: str | type[Worker],
        crew_store: str | Store,
        worker_options: dict[str, Any],
        timeout_scale: float,
        tmp_path: Path,
    ) -> None:
        """A controller killed with SIGKILL: its workers stop even mid-job, judged by the store."""
        crew_id, found = self._orphan(
            started_workers, worker_class, crew_store, worker_options, timeout_scale, tmp_path, lease=3
        )

        def exited() -> list[str]:
            keys = found.list(protocol.inbox_prefix(crew_id))
            return [key for key in keys if key.rpartition("/")[2].startswith("exit.")]

        notes = self._wait(exited, timeout_scale, "the worker to leave (an exit note in the store)", timeout=120)
        assert len(notes) == 1

    def _orphan(
        self,
        started: StartedWorkers,
        worker_class: str | type[Worker],
        crew_store: str | Store,
        worker_options: dict[str, Any],
        timeout_scale: float,
        tmp_path: Path,
        lease: float,
    ) -> tuple[str, Store]:
        """A controller with one worker mid-job, killed with SIGKILL: its crew's id and store,
        which ``started`` deletes (and closes) once it has checked that the worker ended."""
        import cloudpickle

        store = crew_store if isinstance(crew_store, str) else store_spec(crew_store)
        job_started = tmp_path / "started"
        arguments = tmp_path / "arguments.pickle"
        arguments.write_bytes(cloudpickle.dumps((store, worker_class, worker_options, str(job_started))))
        controller = subprocess.Popen(
            [sys.executable, "-c", _ORPHANING_CONTROLLER, str(arguments), str(lease)], stdout=subprocess.PIPE, text=True
        )
        try:
            crew_id, location = controller.stdout.readline().split()  # type: ignore[union-attr]
            found = store_from_config(json.loads(location))
            started.add_orphan(crew_id, found)  # before the wait: if the job never starts, its worker is ended too
            self._wait(job_started.exists, timeout_scale, "the long job to start")
        finally:
            controller.kill()  # no close(), no atexit: an orphan, as after a crash
            controller.wait()
        return crew_id, found

    def test_a_dead_controllers_workers_are_found_by_crew_and_ended_on_their_backend(
        self,
        started_workers: StartedWorkers,
        worker_class: str | type[Worker],
        crew_store: str | Store,
        surviving_options: dict[str, Any],
        timeout_scale: float,
        tmp_path: Path,
    ) -> None:
        """``place``/``find``/``end`` (what ``crew stop`` uses): the worker is found by its crew's
        label (its id and store), not by the same id in another store, and ended at once (its
        lease would keep it 10 minutes), judged by the store. Skipped, before anything starts,
        for a class whose ``place()`` is None."""
        lookup = _lookup(worker_class)
        if _place(lookup, worker_class, surviving_options) is None:
            pytest.skip("this worker class cannot find its workers by crew (its place() is None)")
        crew_id, found = self._orphan(
            started_workers, worker_class, crew_store, surviving_options, timeout_scale, tmp_path, lease=600
        )
        [seen] = [crew for crew in find_crews(found) if crew.id == crew_id]
        assert seen.places, "the crew noted no place for its worker, although place() gave one"
        [(name, place)] = seen.places
        cls = lookup(name)
        search = find_backend_jobs(seen, found, lookup)
        assert search.problems == []
        assert [(job.crew, job.worker, job.incarnation) for job in search.jobs] == [(crew_id, f"{name}-1", 1)], (
            "find() did not return the worker; if it ends with its controller's process by default,"
            " give a surviving_options fixture under which it outlives it"
        )
        label = search.jobs[0].label
        # the same crew id in another store (or planted there) finds nothing of this crew
        assert cls.find(protocol.crew_label("another store", crew_id), place) == []
        json.dumps([dict(job.place) for job in search.jobs])  # what crew ps --json prints
        end_backend_jobs(search, lookup)
        assert search.problems == [] and search.ended == 1
        self._wait(lambda: cls.find(label, place) == [], timeout_scale, "the backend to say the worker ended")
        beats = protocol.inbox_prefix(crew_id) + "beat."

        seen_beat: dict[str, Any] = {"last": None, "since": time.monotonic()}

        def quiet() -> bool:  # no new heartbeat for 3 s (the worker beat every 0.5 s)
            last = found.list(beats)[-1:]
            if last != seen_beat["last"]:
                seen_beat.update(last=last, since=time.monotonic())
            return bool(time.monotonic() - seen_beat["since"] > 3)

        self._wait(quiet, timeout_scale, "the ended worker's heartbeats to stop")
        cls.end(search.jobs)  # ending what has ended already is no error

    def test_running_says_running_and_warns_when_the_backend_cannot_be_asked(
        self, unreachable_worker: Worker | None
    ) -> None:
        if unreachable_worker is None:
            pytest.skip("this backend gives no unreachable_worker fixture")
        with pytest.warns(Warning):  # a false "down" would run its jobs again
            answers = type(unreachable_worker).running([unreachable_worker])
        assert answers == {unreachable_worker.name: True}

    # ------------------------------------------------------------------ job control
    @pytest.fixture
    def one_worker_crew(
        self, make_crew: Callable[..., Crew], worker_options: dict[str, Any], owns_process: bool
    ) -> Crew:
        """A crew of one worker, for the job-control tests (skipped where the process is not the worker's)."""
        if not owns_process:
            pytest.skip("a job in a thread of someone else's process is neither stopped, captured nor cleaned")
        crew = make_crew()
        crew.recruit(workers=1, **worker_options)
        return crew

    def test_a_job_past_its_timeout_is_stopped_and_its_worker_lives_on(
        self, one_worker_crew: Crew, timeout_scale: float
    ) -> None:
        crew = one_worker_crew
        crew.send(jobs.double, args=(1,))
        assert crew.receive(timeout=120 * timeout_scale) is not None  # the worker is up: time the job alone
        job = crew.send(jobs.sleep_then, args=(600,), job_timeout=1)
        result = crew.receive(timeout=120 * timeout_scale)
        assert result is not None and result.id == job and result.status == "timeout"
        assert isinstance(result.error, JobTimeoutError) and isinstance(result.error, TimeoutError)
        assert "sleep_then" in result.traceback  # where it was stopped
        crew.send(jobs.double, args=(5,))
        result = crew.receive(timeout=120 * timeout_scale)
        assert result is not None and result.value == 10
        [row] = crew.summary()
        assert (row["launches"], row["timeouts"], row["crashes"]) == (1, 1, 0)  # not run again, not replaced

    def test_cancel_stops_a_running_job_and_a_waiting_one_never_starts(
        self, one_worker_crew: Crew, timeout_scale: float, tmp_path: Path
    ) -> None:
        crew = one_worker_crew
        started = tmp_path / "started"
        running = crew.send(jobs.touch_then_sleep, args=(str(started), 600))
        waiting = crew.send(jobs.touch_then_sleep, args=(str(tmp_path / "never"), 0))
        self._wait(started.exists, timeout_scale, "the first job to start", timeout=180)
        assert crew.cancel(waiting) == [waiting]
        assert crew.cancel(running) == [running]
        results = {r.id: r for r in crew.results(timeout=60 * timeout_scale)}
        assert {r.status for r in results.values()} == {"cancelled"} and set(results) == {running, waiting}
        assert isinstance(results[running].error, JobCancelledError)
        assert crew.cancel(running) == []  # finished: nothing to do
        crew.send(jobs.double, args=(4,))  # the worker stopped the job and goes on
        result = crew.receive(timeout=120 * timeout_scale)
        assert result is not None and result.value == 8
        assert not (tmp_path / "never").exists()
        assert crew.summary().totals["launches"] == 1

    def test_a_jobs_output_comes_back_with_its_result(self, one_worker_crew: Crew, timeout_scale: float) -> None:
        crew = one_worker_crew
        crew.send(jobs.print_and_run, args=("to stdout", "to stderr", ["echo", "from a program"]))
        result = crew.receive(timeout=120 * timeout_scale)
        assert result is not None and result.status == "success", result
        assert result.stdout == "to stdout\nfrom a program\n"
        assert result.stderr == "to stderr\n"

    # ------------------------------------------------------------------ initializers
    def test_an_initializer_runs_once_in_each_launch_before_its_first_job(
        self, make_crew: Callable[..., Crew], worker_options: dict[str, Any], tmp_path: Path, timeout_scale: float
    ) -> None:
        crew = make_crew()
        folder = str(tmp_path / "inits")
        crew.recruit(workers=1, tasks_max=2, initializer=jobs.initialize, initargs=(folder, "warm"), **worker_options)
        seen = []
        for _ in range(4):  # one at a time: two launches of two jobs each
            crew.send(jobs.initialized)
            result = crew.receive(timeout=180 * timeout_scale)
            assert result is not None and result.ok, result
            seen.append(result.value)
        assert [value for value, _ in seen] == ["warm"] * 4  # every job saw what it set up
        inits = os.listdir(folder)
        assert len(inits) == 2, inits  # once per launch, not per job
        assert {int(name.rsplit(".", 1)[1]) for name in inits} == {pid for _, pid in seen}
        assert crew.summary().totals["launches"] == 2

    def test_a_failing_initializer_retires_its_worker_and_fails_only_the_jobs_it_alone_could_run(
        self, make_crew: Callable[..., Crew], worker_options: dict[str, Any], timeout_scale: float
    ) -> None:
        crew = make_crew()
        [bad] = crew.recruit(workers=1, tags="gpu", initializer=jobs.fail_to_initialize, initargs=("no gpu here",),
                             **worker_options)  # fmt: skip
        crew.recruit(workers=1, **worker_options)
        mine = [crew.send(jobs.double, args=(n,), tags="gpu") for n in range(2)]
        anyone = [crew.send(jobs.double, args=(n,)) for n in range(4)]
        results = {r.id: r for r in crew.results(timeout=180 * timeout_scale)}
        assert sorted(results) == sorted(mine + anyone)
        for job in mine:
            error = results[job].error
            assert results[job].status == "error" and isinstance(error, WorkerInitError), results[job]
            assert "no gpu here" in error.traceback and "fail_to_initialize" in error.traceback
            assert "no gpu here" in str(error)
        assert [results[job].value for job in anyone] == [0, 2, 4, 6]  # the healthy worker ran them
        crew.send(jobs.double, args=(1,), tags="gpu")  # the retired worker is not launched again
        result = crew.receive(timeout=60 * timeout_scale)
        assert result is not None and isinstance(result.error, WorkerInitError)
        [row] = [row for row in crew.summary() if row["worker"] == bad.name]
        assert (row["launches"], row["jobs"], row["state"]) == (1, 0, "init failed"), row

    # ------------------------------------------------------------------ crashes
    def test_a_job_that_kills_its_worker_comes_back_as_crash(
        self, make_crew: Callable[..., Crew], worker_options: dict[str, Any], timeout_scale: float,
        crash_cause: str | None,
    ) -> None:  # fmt: skip
        crew = make_crew(max_tries=2)
        crew.recruit(workers=1, **worker_options)
        job = crew.send(jobs.die, args=(13,))
        result = crew.receive(timeout=180 * timeout_scale)
        assert result is not None and result.id == job and result.status == "crash" and result.tries == 2
        assert isinstance(result.error, WorkerCrashedError)
        if crash_cause is not None:  # how it died, as the backend says it
            assert crash_cause in str(result.error), result.error
        crew.send(jobs.double, args=(5,))  # the crew goes on
        result = crew.receive(timeout=120 * timeout_scale)
        assert result is not None and result.value == 10

    def test_stuck_worker_holds_its_job_until_restart(
        self, make_crew: Callable[..., Crew], worker_options: dict[str, Any], timeout_scale: float
    ) -> None:
        crew = make_crew(max_tries=2, auto_restart=False)
        [worker] = crew.recruit(workers=1, **worker_options)
        job = crew.send(jobs.die)
        self._wait(worker.stuck, timeout_scale, "the worker to be stuck")
        assert not worker.up() and worker.busy()
        assert crew.receive(timeout=0) is None  # held, not lost
        assert crew.restart() == [worker]
        result = crew.receive(timeout=180 * timeout_scale)  # out of tries: a crash, nothing held
        assert result is not None and result.id == job and result.status == "crash" and result.tries == 2
        assert not worker.stuck() and not worker.busy()


def _lookup(worker_class: str | type[Worker]) -> Callable[[str], type[Worker]]:
    """Registered name -> class, the class under test included even when it is not registered."""
    registered = default_plugins().workers.get

    def lookup(name: str) -> type[Worker]:
        given = isinstance(worker_class, type) and worker_class.worker_class == name
        return worker_class if given else registered(name)  # type: ignore[return-value]

    return lookup


def _place(lookup: Callable[[str], type[Worker]], worker_class: str | type[Worker], options: dict[str, Any]) -> Any:
    """What ``place()`` says for a worker of the class under test, asked of one that never starts."""
    cls = worker_class if isinstance(worker_class, type) else lookup(worker_class)
    probe = cls(f"{cls.worker_class}-1", **options)  # a constructor starts nothing (the contract)
    try:
        return probe.place()
    finally:
        probe.close()


# Run by the test above in a process of its own, which the test then kills.
_ORPHANING_CONTROLLER = """
import json, sys, cloudpickle
from crew_core import Crew
from crew_core.durable.leftovers import end_backend_jobs, find_backend_jobs, find_crews
from crew_core.plugin.registry import default_plugins, store_from_config, store_spec
from crew_core.testing import jobs
store, worker_class, options, started = cloudpickle.loads(open(sys.argv[1], "rb").read())
if isinstance(store, dict):
    store = store_from_config(store)
crew = Crew(store=store, worker_classes=[worker_class], lease_timeout=float(sys.argv[2]), heartbeat_interval=0.5,
            heartbeat_timeout=60)
crew.recruit(workers=1, **options)
crew.send(jobs.touch_then_sleep, args=(started, 600))
print(crew.id, json.dumps(store_spec(crew.store), separators=(",", ":")), flush=True)
import time
time.sleep(3600)
"""
