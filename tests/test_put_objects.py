"""``crew.put`` of large objects: buffers apart, mapped by workers, read once, gone after close."""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time

import cloudpickle
import numpy as np
import pytest

from crew_core import Crew
from crew_core.errors import CorruptObjectError, SerializationError, TamperedObjectError
from crew_core.wire import protocol, put_objects
from crew_core.wire.serialize import digest, dumps
from crew_local import LocalStore
from crew_local.counting import CountingStore

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import this module

BIG = put_objects.OUT_OF_BAND_BYTES // 8 + 3  # float64s: just over the size that goes out of band


def same(obj: object) -> object:
    return obj


def is_mapped_read_only(array: np.ndarray) -> tuple[bool, bool]:
    """Whether the job's array is read-only, and whether its memory is a mapping (not a copy)."""
    base = array
    while getattr(base, "base", None) is not None:
        base = base.base
    return not array.flags.writeable, isinstance(base, memoryview) or type(base).__name__ == "mmap"


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def element_and_pid(array: np.ndarray, n: int) -> tuple[float, int]:
    return float(array[n]), os.getpid()


def test_small_objects_stay_plain_pickles():
    """Nothing changes below the size that goes out of band: same digest, one object, no header."""
    small = np.arange(1000)
    packed = put_objects.pack(small)
    assert packed.buffers == () and packed.header == dumps(small) and packed.digest == digest(dumps(small))


def test_equal_objects_have_equal_digests_and_buffers_go_apart():
    a = np.random.default_rng(1).random(BIG)
    first, second = put_objects.pack(a), put_objects.pack(a.copy())
    assert first.digest == second.digest and len(first.buffers) == 1
    assert len(first.header) < 1000 and first.buffers[0].nbytes == a.nbytes  # the data is not in the header
    changed = a.copy()
    changed[-1] += 1
    assert put_objects.pack(changed).digest != first.digest


def test_buffers_are_named_by_their_blake3_and_a_one_byte_change_anywhere_is_refused():
    import blake3

    data = bytearray(np.random.default_rng(6).bytes(3 * put_objects.OUT_OF_BAND_BYTES + 7))
    packed = put_objects.pack(pickle.PickleBuffer(data))
    header = put_objects.parse(packed.header, "h")
    assert packed.header.startswith(b"crew-put/2\n")
    assert header.sizes == (len(data),) and header.hashes == (blake3.blake3(bytes(data)).digest(),)
    put_objects.check_buffer(memoryview(bytes(data)), len(data), header.hashes[0], "b")
    # BLAKE3 hashes 1 KiB chunks in a tree: a change in the first, a middle or the last chunk,
    # at a chunk's first or last byte, each changes the root.
    for at in (0, 1023, 1024, len(data) // 2, len(data) - 1024, len(data) - 1):
        altered = bytearray(data)
        altered[at] ^= 0x80
        with pytest.raises(TamperedObjectError, match="'b' is not the buffer"):
            put_objects.check_buffer(memoryview(bytes(altered)), len(data), header.hashes[0], "b")


def test_a_put_object_of_another_version_is_refused_by_name_not_unpickled():
    older = b"crew-put/1\n" + (1).to_bytes(4, "big") + bytes(40) + dumps([1])
    with pytest.raises(CorruptObjectError, match=r"'h' is a put object of another crew-core version \(crew-put/1\)"):
        put_objects.parse(older, "h")
    assert put_objects.parse(dumps([1]), "h").sizes == ()  # a plain pickle is still one


def test_an_object_that_cannot_be_pickled_is_refused_at_the_call(make_crew):
    crew = make_crew()
    with pytest.raises(SerializationError, match=r"crew.put\(\) cannot pickle the generator"):
        crew.put(x for x in range(3))


def test_objects_with_buffers_round_trip_exactly_and_read_only(make_crew):
    rng = np.random.default_rng(2)
    objects = [
        rng.random(BIG),  # float64, out of band
        rng.integers(0, 2**31, size=(BIG // 100, 100), dtype=np.int32),  # 2-D, another dtype
        np.asfortranarray(rng.random((1024, 200))),  # Fortran order: contiguous, out of band too
        rng.random((2048, 200))[:, ::2],  # not contiguous: pickled in band
        b"\x00\xff" * (put_objects.OUT_OF_BAND_BYTES // 2 + 1),  # bytes: in band
        {"a": rng.random(BIG), "nested": [rng.random(BIG).astype(np.float32), "text", 7]},
        pickle.PickleBuffer(bytearray(rng.bytes(put_objects.OUT_OF_BAND_BYTES))),
    ]
    crew = make_crew()
    crew.recruit(workers=2)
    refs = [crew.put(obj) for obj in objects]
    jobs = {crew.send(same, args=(ref,)): n for n, ref in enumerate(refs)}
    for result in crew.results(timeout=120):
        assert result.ok, result.error
        sent, back = objects[jobs[result.id]], result.value
        if isinstance(sent, dict):
            np.testing.assert_array_equal(back["a"], sent["a"])
            np.testing.assert_array_equal(back["nested"][0], sent["nested"][0])
            assert back["nested"][0].dtype == np.float32 and back["nested"][1:] == ["text", 7]
        elif isinstance(sent, np.ndarray):
            np.testing.assert_array_equal(back, sent)
            assert back.dtype == sent.dtype and back.flags.f_contiguous == sent.flags.f_contiguous
        elif isinstance(sent, pickle.PickleBuffer):
            assert bytes(back) == bytes(sent.raw())
        else:
            assert back == sent
    job = crew.send(is_mapped_read_only, args=(refs[0],))
    result = crew.receive(timeout=60)
    assert result.id == job and result.value == (True, True), result.error


def test_each_worker_reads_an_object_once_and_maps_its_buffer(make_crew, tmp_path):
    store = CountingStore(tmp_path / "store")
    try:
        crew = make_crew(store=store)
        crew.recruit(workers=2)
        array = np.random.default_rng(3).random(BIG)
        ref = crew.put(array)
        for n in range(40):
            crew.send(element_and_pid, args=(ref, n))
        results = list(crew.results(timeout=120))
        assert sorted(r.value[0] for r in results) == sorted(array[:40])
        workers = {r.value[1] for r in results}
        header, part = protocol.data_key(crew.id, ref.digest), protocol.buffer_key(crew.id, ref.digest, 0)
        reads = [(a.pid, a.op, a.key) for a in store.accesses() if a.key in (header, part) and a.op.startswith("get")]
        for pid in workers:
            assert sorted((op, key) for who, op, key in reads if who == pid) == [("get", header), ("get_buffer", part)]
        written = [a for a in store.accesses() if a.key == part and a.op.startswith("put")]
        assert [(a.op, a.size) for a in written] == [("put_buffer", array.nbytes)]  # written once, not copied per job
    finally:
        store.close()


def maps_a_file_under(array: np.ndarray, folder: str) -> bool:
    """Whether this worker has a file under ``folder`` mapped (the put object's buffer)."""
    with open("/proc/self/maps") as maps:
        return any(folder + "/" in line for line in maps)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc/self/maps")
def test_mapped_files_leave_nothing_behind_after_close():
    store = LocalStore()  # the default: a temporary folder in /dev/shm where there is one
    root = store.root
    with Crew(store=store, worker_classes=["subprocess"]) as crew:
        crew.recruit(workers=2)
        ref = crew.put(np.ones(BIG))
        for _ in range(4):
            crew.send(maps_a_file_under, args=(ref, str(root)))
        results = list(crew.results(timeout=120))
        assert [r.value for r in results] == [True] * 4, [r.error for r in results]
    store.close()
    assert not root.exists()


def test_a_named_crews_put_object_reaches_its_jobs_after_it_resumes(tmp_path, monkeypatch):
    """The jobs a dead controller left in the journal hold references: the next controller's
    workers still find and check the object it put."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("CREW_SECRET", raising=False)
    store = str(tmp_path / "store")
    array = np.random.default_rng(4).random(BIG)
    crew = Crew(store=store, name="shared", worker_classes=["subprocess"])
    crew.recruit(workers=1)
    ref = crew.put(array)
    ahead = crew.send(sleep_then_pid, args=(1.0,))  # the one worker is busy: the others wait for the next run
    jobs = [crew.send(element_and_pid, args=(ref, n)) for n in range(3)]
    crew._manager.close()  # as if the controller died before any result came back: its objects stay
    crew._closed = True
    with Crew(store=store, name="shared", worker_classes=["subprocess"]) as resumed:
        assert resumed.resumed
        results = {r.id: r for r in resumed.results(timeout=120)}
        assert results.pop(ahead).ok
        assert sorted(results) == jobs and all(r.ok for r in results.values()), [r.error for r in results.values()]
        assert [results[job].value[0] for job in jobs] == list(array[:3])
        again = resumed.put(array)
        assert again == ref
        job = resumed.send(element_and_pid, args=(again, 7))
        result = resumed.receive(timeout=120)
        assert result.id == job and result.value[0] == array[7], result.error


def test_a_buffer_altered_in_the_store_fails_the_job_and_is_not_used(make_crew, tmp_path):
    store = LocalStore(tmp_path / "store")
    try:
        crew = make_crew(store=store)
        crew.recruit(workers=1)
        array = np.arange(BIG, dtype=np.float64)
        ref = crew.put(array)
        altered = array.copy()
        altered[0] = -1.0
        store.put(protocol.buffer_key(crew.id, ref.digest, 0), altered.tobytes())  # same size, one value changed
        crew.send(element_and_pid, args=(ref, 0))
        result = crew.receive(timeout=120)
        assert result.status == "error" and isinstance(result.error, TamperedObjectError), result.error
        assert "not the buffer its signed put object names" in str(result.error)
    finally:
        store.close()


def test_threads_that_want_an_object_at_once_read_it_once(tmp_path):
    from crew_core.wire.refs import ObjectCache, upload
    from crew_core.wire.signing import RunKeys, Sealed, new_secret

    store = CountingStore(tmp_path / "store")
    try:
        keys = RunKeys(new_secret())
        packed = put_objects.pack(np.random.default_rng(5).random(BIG * 8))
        upload(Sealed(store, keys), "c", packed)
        cache = ObjectCache(Sealed(store, keys.worker_keys("w", 1)))
        start, got = threading.Barrier(4), []

        def want() -> None:
            start.wait()
            got.append(cache.get("c", packed.digest))

        threads = [threading.Thread(target=want) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(got) == 4 and all(obj is got[0] for obj in got)
        assert [a.op for a in store.accesses() if a.op.startswith("get")] == ["get", "get_buffer"]
    finally:
        store.close()
