"""The contract every :class:`~crew_core.Store` must meet, as a pytest suite to subclass."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from crew_core import KeyNotFoundError, Store


class StoreContract:
    """Subclass and provide a ``store`` fixture that yields a fresh, empty store.

    Override :meth:`raw_put` and :meth:`raw_get` to read and write the backend *without* the
    store's own methods (a file on disk, a direct SDK call): the suite then checks the store
    against the backend rather than against itself. Without them those tests skip.
    """

    # ------------------------------------------------------------------ ground-truth helpers
    def raw_put(self, store: Store, key: str, data: bytes) -> None:
        pytest.skip("raw_put is not provided by this test class")

    def raw_get(self, store: Store, key: str) -> bytes:
        pytest.skip("raw_get is not provided by this test class")

    # ------------------------------------------------------------------ the four verbs
    def test_put_then_get_returns_the_bytes(self, store: Store) -> None:
        store.put("a/b/c", b"hello")
        assert store.get("a/b/c") == b"hello"

    def test_get_of_a_missing_key_raises_key_not_found(self, store: Store) -> None:
        with pytest.raises(KeyNotFoundError):
            store.get("nothing/here")
        store.put("dir/file", b"x")
        with pytest.raises(KeyNotFoundError):
            store.get("dir")  # a prefix is not an object

    def test_put_replaces_the_previous_object(self, store: Store) -> None:
        store.put("k", b"first version, longer")
        store.put("k", b"second")
        assert store.get("k") == b"second"

    def test_empty_and_binary_objects_round_trip(self, store: Store) -> None:
        store.put("empty", b"")
        store.put("binary", bytes(range(256)) * 4)
        assert store.get("empty") == b""
        assert store.get("binary") == bytes(range(256)) * 4

    def test_large_objects_round_trip(self, store: Store) -> None:
        data = bytes(range(256)) * (6 * 1024 * 4)  # 6 MiB: above common single-request sizes
        store.put("large", data)
        assert store.get("large") == data

    def test_list_is_sorted_recursive_and_prefix_bound(self, store: Store) -> None:
        for key in ["p/b", "p/a", "p/sub/c", "q/a", "pp/x"]:
            store.put(key, b"1")
        assert store.list("p/") == ["p/a", "p/b", "p/sub/c"]
        assert store.list("p/sub/") == ["p/sub/c"]
        assert store.list("nope/") == []
        assert store.list("") == ["p/a", "p/b", "p/sub/c", "pp/x", "q/a"]

    def test_list_start_after_is_exclusive(self, store: Store) -> None:
        for n in range(1, 6):
            store.put(f"t/{n:04d}", b"1")
        assert store.list("t/", start_after="t/0002") == ["t/0003", "t/0004", "t/0005"]
        assert store.list("t/", start_after="t/0000") == [f"t/{n:04d}" for n in range(1, 6)]
        assert store.list("t/", start_after="t/0005") == []

    def test_list_pages_through_many_keys(self, store: Store) -> None:
        keys = [f"many/{n:05d}" for n in range(1100)]  # more than one page of S3 or GCS listing
        for key in keys:
            store.put(key, b"")
        assert store.list("many/") == keys
        assert store.list("many/", start_after=keys[1049]) == keys[1050:]

    def test_delete_removes_and_ignores_missing_keys(self, store: Store) -> None:
        store.put("d/1", b"1")
        store.put("d/2", b"2")
        store.delete(["d/1", "d/never"])
        assert store.list("d/") == ["d/2"]
        with pytest.raises(KeyNotFoundError):
            store.get("d/1")

    def test_delete_prefix_removes_everything_below(self, store: Store) -> None:
        for key in ["x/1", "x/y/2", "xz/3"]:
            store.put(key, b"1")
        store.delete_prefix("x/")
        assert store.list("") == ["xz/3"]

    def test_invalid_keys_are_rejected(self, store: Store) -> None:
        for key in ["", "/abs", "a//b", "../up", "a/.hidden", "a b"]:
            with pytest.raises(ValueError):
                store.put(key, b"1")

    # ------------------------------------------------------------------ against the backend
    def test_store_writes_what_the_backend_holds(self, store: Store) -> None:
        store.put("truth/one", b"from the store")
        assert self.raw_get(store, "truth/one") == b"from the store"

    def test_store_reads_what_the_backend_holds(self, store: Store) -> None:
        self.raw_put(store, "truth/two", b"from the backend")
        assert store.get("truth/two") == b"from the backend"
        assert "truth/two" in store.list("truth/")

    # ------------------------------------------------------------------ atomicity and sharing
    def test_readers_never_see_a_partial_object(self, store: Store) -> None:
        versions = [bytes([n]) * (1 << 20) for n in (1, 2)]
        store.put("atomic", versions[0])
        stop = threading.Event()
        errors: list[str] = []

        def writer() -> None:
            n = 0
            while not stop.is_set():
                store.put("atomic", versions[n % 2])
                n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            for _ in range(50):
                data = store.get("atomic")
                if data not in versions:
                    errors.append(f"read {len(data)} bytes that are neither version")
        finally:
            stop.set()
            thread.join()
        assert not errors

    def test_config_rebuilds_a_store_in_another_process(self, store: Store) -> None:
        store.put("shared/key", b"seen from afar")
        config = store.config()
        json.dumps(config)  # it travels on a command line: it must be JSON
        cls = type(store)
        code = (
            "import sys, json, importlib\n"
            f"cls = getattr(importlib.import_module({cls.__module__!r}), {cls.__qualname__!r})\n"
            "store = cls.from_config(json.loads(sys.argv[1]))\n"
            "sys.stdout.write(store.get('shared/key').decode())\n"
            "store.put('shared/reply', b'written afar')\n"
            "store.close()\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(config)], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout == "seen from afar"
        assert store.get("shared/reply") == b"written afar"

    # ------------------------------------------------------------------ optional wake-ups
    def test_wait_without_notification_returns_false(self, store: Store) -> None:
        store.wait("quiet.channel", 0)  # start listening
        assert store.wait("quiet.channel", 0.01) is False

    def test_notify_wakes_a_waiter(self, store: Store) -> None:
        if not store.notifies:
            pytest.skip(f"{type(store).__name__} does not notify (it is polled)")
        store.wait("bell.channel", 0)  # start listening, as the protocol does
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(store.wait("bell.channel", 60)))
        start = time.monotonic()
        waiter.start()
        store.notify("bell.channel")
        waiter.join(timeout=60)
        assert woke == [True]
        assert time.monotonic() - start < 30  # woken, not timed out

    def test_notify_without_a_listener_is_harmless(self, store: Store) -> None:
        store.notify("nobody.listens")
