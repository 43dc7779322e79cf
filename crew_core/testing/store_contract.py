"""The contract every :class:`~crew_core.Store` must meet, as a pytest suite to subclass."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from crew_core.errors import KeyNotFoundError
from crew_core.plugin import Store, is_key
from crew_core.testing.together import READY_SET_GO, run_together

#: Names that are not keys: ``put``, ``get`` and ``delete`` must raise ValueError for each.
INVALID_KEYS = ("", "/abs", "a//b", "../x", "a/../b", ".hidden", "a/.hidden", "a/", "a b", "caf\u00e9")

#: Keys whose code-point order differs from a case-insensitive, per-folder or numeric order.
#: (No two differ only in case: a case-insensitive file system could not hold both.)
ORDER_KEYS = (
    "-z", "0", "10", "9", "B", "K1", "Z", "_z", "a-b", "a.b", "a/-x", "a/0", "a/B", "a/_", "a/b",
    "a0", "aB", "a_b", "k10", "k9",
)  # fmt: skip

#: Size of the large-object test: past 8 MiB, where SDKs switch to multipart or chunked transfers.
LARGE_OBJECT_SIZE = 16 * 1024 * 1024 + 7


def _show(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(value)} items)"


def expect_equal(got: Any, want: Any, what: str) -> None:
    """Fail with both values and what was asked.

    pytest rewrites the asserts of test modules only, not of this suite imported by them, so a
    bare ``assert`` here would fail without saying what it saw.
    """
    if got != want:
        raise AssertionError(f"{what}: got {_show(got)}, expected {_show(want)}")


def expect_same_bytes(got: bytes, want: bytes, what: str) -> None:
    """Compare large objects without a diff of megabytes; say where they first differ."""
    if got == want:
        return
    size, block = min(len(got), len(want)), 1 << 16
    left, right = memoryview(got), memoryview(want)
    start = next((i for i in range(0, size, block) if left[i : i + block] != right[i : i + block]), size)
    at = next((i for i in range(start, min(start + block, size)) if left[i] != right[i]), size)
    raise AssertionError(f"{what}: {len(got)} bytes instead of {len(want)}, first difference at byte {at}")


def keys_among(names: list[str], *also: str) -> list[str]:
    """The keys among a backend's object names, and those of ``also`` (private names a test wrote).

    A store may keep private objects of its own beside the keys (an index or a lock per folder,
    §3.3), whose names a test cannot know: it compares this with what it wrote, not the whole listing.
    """
    wanted = set(also)
    return [name for name in names if name in wanted or is_key(name)]


def expect_invalid_key_rejected(verb: str, call: Callable[[str], object], key: str) -> None:
    """``call(key)`` must raise ValueError, as :func:`crew_core.plugin.store.check_key` does."""
    try:
        call(key)
    except ValueError:
        return
    except Exception as exc:
        raise AssertionError(f"{verb}({key!r}) raised {exc!r}, not ValueError for an invalid key") from exc
    raise AssertionError(f"{verb}({key!r}) accepted an invalid key: it must raise ValueError")


class StoreContract:
    """Subclass and provide a ``store`` fixture that yields a fresh, empty store.

    **Ground truth.** Override :meth:`raw_put`, :meth:`raw_get` and :meth:`raw_list` to reach the
    backend *without* the store's own methods (a file on disk, a direct SDK call with a client of
    your own): the suite then checks the store against the backend rather than against itself.
    Tests that need a helper you do not provide skip with a reason.

    **Paging.** Override the ``small_page_store`` fixture to return a second store on the same
    location as ``store`` that asks the backend for at most :attr:`small_page` keys per list
    request (S3Store and GCSStore take a ``page_size`` option): paging is then tested with a few
    dozen keys. Without it the paging test writes 1100 keys, more than one page of S3 or GCS.

    **Create-only writes.** ``put_new`` must create an absent key and leave a present one alone
    in every store; a store with ``atomic_put_new`` must also let exactly one of :attr:`racers`
    threads, and of as many processes, create each key they race for (else those tests skip).

    **The store's own objects.** A store may keep private dot-name objects of its own beside the
    keys (temporary files, an index or a lock per folder). The suite never expects the backend to
    hold only what a test wrote: it checks that the keys there are the test's, that the private
    objects a test planted are there or gone as the contract says, and, after ``delete_prefix``,
    that nothing at all is left under the prefix, since that deletes the store's own objects too.

    **Cleaning up.** After every test the suite empties the store's location with
    ``store.delete_prefix("")`` and checks with :meth:`raw_list` that nothing is left in the
    backend (without ``raw_list``: that ``store.list("")`` is empty); see :meth:`clean_up`.
    """

    #: Keys per list request that the ``small_page_store`` fixture's store asks for.
    small_page: ClassVar[int] = 10
    #: How many threads, and how many processes, race to create each key with ``put_new``.
    racers: ClassVar[int] = 6
    #: How many keys they race for.
    races: ClassVar[int] = 20
    #: Set by a test that closes the fixture's store, so that clean-up does not use it.
    store_closed_by_test: bool = False

    # ------------------------------------------------------------------ ground-truth helpers
    def raw_put(self, store: Store, key: str, data: bytes) -> None:
        """Write ``data`` under the object name ``key`` (relative to the store's location).

        Tests also plant private objects with it (``p/.tmp``, ``x/.hidden/z``): objects a store
        must hide from ``list``, leave alone in ``delete`` and remove in ``delete_prefix``.
        """
        pytest.skip("raw_put is not provided by this test class")

    def raw_get(self, store: Store, key: str) -> bytes:
        """Read the object named ``key`` (relative to the store's location) from the backend."""
        pytest.skip("raw_get is not provided by this test class")

    def raw_list(self, store: Store, prefix: str) -> list[str]:
        """Every object name under the store's location that starts with ``prefix``, sorted.

        Names are relative to the location (``"a/b"`` for ``s3://bucket/root/a/b``) and include
        every private object (any segment starting with ``.``), the store's own as well as those a
        test planted; folders are not objects. Tests look in it for the keys and the private
        objects they wrote, and tolerate the store's own (see the class docstring).
        """
        pytest.skip("raw_list is not provided by this test class")

    def provides(self, helper: str) -> bool:
        """Whether this test class overrides the raw helper named ``helper``."""
        return getattr(type(self), helper) is not getattr(StoreContract, helper)

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture
    def small_page_store(self, store: Store) -> Store | None:
        """A store on ``store``'s location listing :attr:`small_page` keys per request, or None."""
        return None

    @pytest.fixture(autouse=True)
    def clean_up_after_the_test(self, store: Store) -> Iterator[None]:
        """Run :meth:`clean_up` after each test (before the ``store`` fixture closes the store)."""
        yield
        self.clean_up(store)

    def clean_up(self, store: Store) -> None:
        """Delete everything under the store's location, then check that the backend is empty.

        Uses the store's own ``delete_prefix("")``, which must remove private objects too, the
        store's own included; a test that leaves anything behind (or a ``delete_prefix`` that misses
        something) fails here. A store the test closed cannot be asked: the test emptied the
        location itself before closing it, and no key may be left, but private objects the store
        wrote while closing (a lock released, a journal flushed) are its own and tolerated.
        """
        if self.store_closed_by_test:
            if self.provides("raw_list"):
                left = keys_among(self.raw_list(store, ""))
                expect_equal(left, [], "keys left in the backend after the test closed the store")
        elif self.provides("raw_list"):
            if self.raw_list(store, ""):
                store.delete_prefix("")
            left = self.raw_list(store, "")
            expect_equal(left, [], "objects left in the backend after the test and delete_prefix('')")
        else:
            store.delete_prefix("")
            expect_equal(store.list(""), [], "keys left after the test and delete_prefix('')")

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
        # Random bytes, not a repeating pattern: a chunk lost, repeated or reordered shows.
        data = random.Random(LARGE_OBJECT_SIZE).randbytes(LARGE_OBJECT_SIZE)
        store.put("large/stored", data)
        expect_same_bytes(store.get("large/stored"), data, "get('large/stored') after put")
        if self.provides("raw_get"):
            expect_same_bytes(self.raw_get(store, "large/stored"), data, "the backend's object after put")
        if self.provides("raw_put"):
            self.raw_put(store, "large/raw", data)
            expect_same_bytes(store.get("large/raw"), data, "get('large/raw') of an object the backend holds")

    def test_buffers_round_trip_read_only(self, store: Store) -> None:
        """``put_buffer`` and ``get_buffer`` (``crew.put``'s large arrays) are ``put`` and ``get``
        for buffers: the same bytes whichever pair writes and reads, and a read-only buffer back."""
        data = random.Random(LARGE_OBJECT_SIZE + 1).randbytes(LARGE_OBJECT_SIZE)
        store.put_buffer("buffers/large", memoryview(data))
        view = store.get_buffer("buffers/large")
        assert isinstance(view, memoryview) and view.readonly, "get_buffer must give a read-only memoryview"
        expect_same_bytes(view.tobytes(), data, "get_buffer('buffers/large') after put_buffer")
        expect_same_bytes(store.get("buffers/large"), data, "get('buffers/large') after put_buffer")
        if self.provides("raw_get"):
            expect_same_bytes(self.raw_get(store, "buffers/large"), data, "the backend's object after put_buffer")
        store.put("buffers/put", data[:1000])
        assert store.get_buffer("buffers/put").tobytes() == data[:1000]
        store.put_buffer("buffers/empty", memoryview(b""))
        assert store.get_buffer("buffers/empty").tobytes() == b"" and store.get("buffers/empty") == b""
        numbers = memoryview(bytearray(range(256)) * 8).cast("Q")  # not bytes: a typed buffer (8-byte items)
        store.put_buffer("buffers/typed", numbers)
        assert store.get_buffer("buffers/typed").tobytes() == numbers.tobytes()
        with pytest.raises(KeyNotFoundError):
            store.get_buffer("buffers/absent")

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

    def test_list_orders_keys_by_code_point(self, store: Store) -> None:
        """Python's string order, which is the byte order S3 and GCS list in: '-' < '.' < '/' < digits
        < upper case < '_' < lower case, character by character, across folders."""
        for key in random.Random(0).sample(ORDER_KEYS, len(ORDER_KEYS)):
            store.put(key, b"1")
        ordered = sorted(ORDER_KEYS)
        expect_equal(store.list(""), ordered, "list('')")
        expect_equal(store.list("a"), [k for k in ordered if k.startswith("a")], "list('a')")
        expect_equal(store.list("", start_after="a.b"), [k for k in ordered if k > "a.b"], "list('', 'a.b')")
        if self.provides("raw_list"):  # each key under its own name, nothing else that looks like one
            expect_equal(keys_among(self.raw_list(store, "")), ordered, "the backend's names that are keys")

    def test_list_reads_every_page(self, store: Store, small_page_store: Store | None) -> None:
        """All pages, whatever the page size; pages of private names only do not end the listing."""
        paged, count = (store, 1100) if small_page_store is None else (small_page_store, 3 * self.small_page + 3)
        keys = [f"many/{n:05d}" for n in range(count)]
        for key in [*keys, "man/y", "many0/z"]:
            store.put(key, b"")
        if small_page_store is not None and self.provides("raw_put"):
            for n in range(self.small_page + 1):  # a whole first page of private names
                self.raw_put(store, f"many/.tmp{n:03d}", b"")
        expect_equal(paged.list("many/"), keys, "list('many/')")
        expect_equal(paged.list(""), ["man/y", *keys, "many0/z"], "list('')")
        page = min(self.small_page, count) if small_page_store is not None else 1000
        expect_equal(paged.list("many/", start_after=keys[page - 1]), keys[page:], "list after the first page")
        expect_equal(paged.list("many/", start_after=keys[-2]), keys[-1:], "list after all but one key")

    def test_list_hides_private_dot_names(self, store: Store) -> None:
        """Any name with a segment starting with '.' is the backend's, not a key."""
        store.put("p/a", b"1")
        store.put("p/sub/b", b"1")
        # ".planted.": a lock or index of the store's own (".lock", ".index") is not overwritten.
        private = ["p/.tmp", "p/.a.1234.tmp", "p/sub/.planted.lock", "p/.hidden/c", ".top", "p/sub/.x/y"]
        for name in private:
            self.raw_put(store, name, b"private")
        expect_equal(store.list("p/"), ["p/a", "p/sub/b"], "list('p/')")
        expect_equal(store.list(""), ["p/a", "p/sub/b"], "list('')")
        expect_equal(store.list("p/", start_after="p/."), ["p/a", "p/sub/b"], "list('p/', 'p/.')")
        if self.provides("raw_list"):  # the planted objects are there, so list did hide them
            names = keys_among(self.raw_list(store, ""), *private)
            expect_equal(names, sorted([*private, "p/a", "p/sub/b"]), "the backend's keys and planted names")

    def test_list_is_never_stale(self, store: Store) -> None:
        """Listings see every put and delete at once, the store's own and those of other processes."""
        other = type(store).from_config(store.config())  # another party, e.g. a worker
        try:
            expect_equal(store.list("c/"), [], "list('c/') of an empty store")
            store.put("c/1", b"1")
            expect_equal(store.list("c/"), ["c/1"], "list('c/') after put('c/1')")
            other.put("c/2", b"2")
            expect_equal(store.list("c/"), ["c/1", "c/2"], "list('c/') after another store's put('c/2')")
            expect_equal(store.list("c/", start_after="c/1"), ["c/2"], "list('c/', 'c/1')")
            if self.provides("raw_put"):
                self.raw_put(store, "c/3", b"3")
                expect_equal(store.list("c/"), ["c/1", "c/2", "c/3"], "list('c/') after the backend got 'c/3'")
                store.delete(["c/3"])
            store.delete(["c/1"])
            expect_equal(store.list("c/"), ["c/2"], "list('c/') after delete(['c/1'])")
            expect_equal(store.list("c/", start_after="c/1"), ["c/2"], "list('c/', 'c/1') after the delete")
            other.delete(["c/2"])
            expect_equal(store.list("c/"), [], "list('c/') after another store's delete(['c/2'])")
            store.put("c/4", b"4")
            store.delete_prefix("c/")
            expect_equal(store.list(""), [], "list('') after delete_prefix('c/')")
        finally:
            other.close()

    def test_delete_removes_and_ignores_missing_keys(self, store: Store) -> None:
        store.put("d/1", b"1")
        store.put("d/2", b"2")
        store.delete(["d/1", "d/never"])
        store.delete([])
        assert store.list("d/") == ["d/2"]
        with pytest.raises(KeyNotFoundError):
            store.get("d/1")
        if self.provides("raw_list"):  # gone from the backend, not merely hidden
            keys = keys_among(self.raw_list(store, "d/"))
            expect_equal(keys, ["d/2"], "the backend's names under 'd/' that are keys, after the delete")

    def test_delete_prefix_removes_everything_below(self, store: Store) -> None:
        for key in ["x/1", "x/y/2", "xz/3"]:
            store.put(key, b"1")
        store.delete_prefix("x/")
        assert store.list("") == ["xz/3"]

    def test_delete_prefix_removes_private_objects_too(self, store: Store) -> None:
        """Cleaning up a worker or a crew leaves nothing behind, not even the backend's own files."""
        for key in ["x/1", "x/y/2", "xz/3"]:
            store.put(key, b"1")
        store.wait("x/y/channel", 0)  # a store that listens through private objects makes one here
        outside = ["xz/.planted.keep", ".x.private"]
        for name in ["x/.tmp", "x/y/.planted.lock", "x/.hidden/z", *outside]:
            self.raw_put(store, name, b"private")
        store.delete_prefix("x/")
        # Everything under the prefix goes, the store's own objects too; outside it, what the test
        # wrote stays, beside whatever the store keeps there.
        expect_equal(self.raw_list(store, "x/"), [], "the backend's names under 'x/' after delete_prefix('x/')")
        names = keys_among(self.raw_list(store, ""), *outside)
        expect_equal(names, sorted([*outside, "xz/3"]), "the backend's keys and planted names outside 'x/'")
        expect_equal(store.list(""), ["xz/3"], "list('') after delete_prefix('x/')")

    def test_put_rejects_invalid_keys(self, store: Store) -> None:
        for key in INVALID_KEYS:
            expect_invalid_key_rejected("put", lambda key: store.put(key, b"1"), key)

    def test_get_rejects_invalid_keys(self, store: Store) -> None:
        for key in INVALID_KEYS:
            expect_invalid_key_rejected("get", store.get, key)
        if self.provides("raw_put"):
            self.raw_put(store, "a/.hidden", b"private")  # a private object is not a key, even where it exists
            expect_invalid_key_rejected("get", store.get, "a/.hidden")

    def test_delete_rejects_invalid_keys(self, store: Store) -> None:
        for key in INVALID_KEYS:
            expect_invalid_key_rejected("delete", lambda key: store.delete([key]), key)
        if self.provides("raw_put") and self.provides("raw_get"):
            self.raw_put(store, "a/.hidden", b"private")
            expect_invalid_key_rejected("delete", lambda key: store.delete([key]), "a/.hidden")
            expect_equal(self.raw_get(store, "a/.hidden"), b"private", "the private object after delete(['a/.hidden'])")

    # ------------------------------------------------------------------ create-only writes
    def test_put_new_creates_an_absent_key(self, store: Store) -> None:
        expect_equal(store.put_new("new/a", b"first"), True, "put_new('new/a') of an absent key")
        expect_equal(store.get("new/a"), b"first", "get('new/a') after put_new")
        expect_equal(store.list("new/"), ["new/a"], "list('new/') after put_new")
        expect_equal(store.put_new("new/empty", b""), True, "put_new('new/empty', b'')")
        expect_equal(store.get("new/empty"), b"", "get('new/empty')")
        if self.provides("raw_get"):
            expect_equal(self.raw_get(store, "new/a"), b"first", "the backend's object after put_new")

    def test_put_new_leaves_a_present_key_alone(self, store: Store) -> None:
        store.put("new/b", b"put first")
        expect_equal(store.put_new("new/b", b"second"), False, "put_new('new/b') of a key put before")
        expect_equal(store.get("new/b"), b"put first", "get('new/b') after a refused put_new")
        expect_equal(store.put_new("new/c", b"1"), True, "the first put_new('new/c')")
        expect_equal(store.put_new("new/c", b"2"), False, "the second put_new('new/c')")
        expect_equal(store.get("new/c"), b"1", "get('new/c') after a refused put_new")
        if self.provides("raw_put") and self.provides("raw_get"):
            self.raw_put(store, "new/d", b"the backend's")
            expect_equal(store.put_new("new/d", b"mine"), False, "put_new('new/d') of an object the backend holds")
            expect_equal(self.raw_get(store, "new/d"), b"the backend's", "the backend's object after put_new")
        store.delete(["new/c"])
        expect_equal(store.put_new("new/c", b"3"), True, "put_new('new/c') after its delete")
        expect_equal(store.get("new/c"), b"3", "get('new/c') after put_new")

    def test_put_new_rejects_invalid_keys(self, store: Store) -> None:
        for key in INVALID_KEYS:
            expect_invalid_key_rejected("put_new", lambda key: store.put_new(key, b"1"), key)

    def test_put_new_lets_one_of_many_threads_create_a_key(self, store: Store) -> None:
        """Threads released together by a barrier race for each key: exactly one creates it."""
        if not store.atomic_put_new:
            pytest.skip(f"{type(store).__name__}.put_new is not atomic (atomic_put_new is False)")
        for n in range(self.races):
            key = f"race/{n:03d}"
            winners = self._race_threads(store, key)
            expect_equal(len(winners), 1, f"threads whose put_new({key!r}) returned True ({winners})")
            expect_equal(store.get(key), f"thread {winners[0]}".encode(), f"get({key!r}): the winner's object")

    def _race_threads(self, store: Store, key: str) -> list[int]:
        """Release :attr:`racers` threads at once to ``put_new(key)``; return those that got True."""
        barrier = threading.Barrier(self.racers)
        won: dict[int, bool] = {}
        errors: list[BaseException] = []

        def race(me: int) -> None:
            try:
                barrier.wait(timeout=60)
                won[me] = store.put_new(key, f"thread {me}".encode())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(me,)) for me in range(self.racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return sorted(me for me, created in won.items() if created)

    def test_put_new_lets_one_of_many_processes_create_a_key(self, store: Store) -> None:
        """Processes that rebuild the store from ``config()``, released together, race for each key."""
        if not store.atomic_put_new:
            pytest.skip(f"{type(store).__name__}.put_new is not atomic (atomic_put_new is False)")
        cls = type(store)
        code = (
            "import sys, json, importlib\n"
            f"cls = getattr(importlib.import_module({cls.__module__!r}), {cls.__qualname__!r})\n"
            "store = cls.from_config(json.loads(sys.argv[1]))\n"
            f"{READY_SET_GO}\n"
            "won = [store.put_new(key, sys.argv[2].encode()) for key in json.loads(sys.argv[3])]\n"
            "print(json.dumps(won))\n"
            "store.close()\n"
        )
        keys = [f"race/{n:03d}" for n in range(self.races)]
        commands = [
            [sys.executable, "-c", code, json.dumps(store.config()), f"process {me}", json.dumps(keys)]
            for me in range(self.racers)
        ]
        finished = run_together(commands)
        for me, process in enumerate(finished):
            expect_equal(process.returncode, 0, f"exit code of racing process {me} ({process.stderr[-2000:]})")
        won = [json.loads(process.stdout) for process in finished]
        for n, key in enumerate(keys):
            winners = [me for me in range(self.racers) if won[me][n]]
            expect_equal(len(winners), 1, f"processes whose put_new({key!r}) returned True ({winners})")
            expect_equal(store.get(key), f"process {winners[0]}".encode(), f"get({key!r}): the winner's object")

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

    def test_close_is_idempotent_and_keeps_shared_data(self, store: Store) -> None:
        other = type(store).from_config(store.config())  # as a worker rebuilds it
        store.put("kept", b"shared")
        other.close()
        other.close()
        expect_equal(store.get("kept"), b"shared", "get('kept') after another store on it closed")
        store.delete_prefix("")  # the clean-up cannot use a closed store: private objects go too
        self.store_closed_by_test = True
        store.close()
        store.close()  # and the store fixture may close it once more

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
