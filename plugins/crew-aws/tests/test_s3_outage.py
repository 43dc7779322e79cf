"""S3 unreachable for 10 s in the middle of a run, for the controller and its workers alike.

A TCP relay stands between every party and moto: cut, it drops open connections and refuses new
ones, as a network that goes away does. Nothing may be lost or delivered twice. (botocore's own
retries, 10 attempts with back-off, ride out most of such an outage before crew sees an error.)
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlparse

import pytest

from crew_core import Crew, StoreError
from crew_core.testing import jobs


class Relay:
    """Forwards 127.0.0.1:<port> to ``target``; ``cut()`` and ``mend()`` the line."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = False
        self.refused = 0  # connections turned away while cut: proof the outage was felt
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                self._close(end)

    def _close(self, end: socket.socket) -> None:
        with self.lock:
            self.open.discard(end)
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        end.close()

    def cut(self) -> None:
        self.down = True
        with self.lock:
            ends = list(self.open)
        for end in ends:
            self._close(end)

    def mend(self) -> None:
        self.down = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def relay(s3_endpoint, monkeypatch):
    url = urlparse(s3_endpoint)
    line = Relay((url.hostname, url.port))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{line.port}")  # workers inherit it
    yield line
    line.close()


def test_s3_unreachable_for_10_s_loses_nothing(bucket, relay):
    with Crew(store=f"s3://{bucket}/outage", worker_classes=["subprocess"], heartbeat_interval=1.0) as crew:
        crew.recruit(workers=2)
        ids = [crew.send(jobs.sleep_then, args=(0.2, n)) for n in range(20)]
        results = {}
        while len(results) < 3:
            result = crew.receive(timeout=120)
            results[result.id] = result
        relay.cut()
        cut_at = time.monotonic()
        while time.monotonic() - cut_at < 10:
            try:
                result = crew.receive(timeout=max(0.0, 10 - (time.monotonic() - cut_at)))
            except StoreError:
                continue  # said once per outage, if it outlasts the client's own retries

            if result is not None:
                assert result.id not in results, f"job {result.id} delivered twice"
                results[result.id] = result
        relay.mend()
        while True:
            try:
                result = crew.receive(timeout=180)
            except StoreError:
                continue  # reported while the line was down
            if result is None:
                break
            assert result.id not in results, f"job {result.id} delivered twice"
            results[result.id] = result
        assert relay.refused > 0, "nobody tried to reach S3 while it was cut"
        assert sorted(results) == sorted(ids), f"lost: {sorted(set(ids) - set(results))}"
        assert all(r.ok and r.value == r.id - 1 for r in results.values()), [r.error for r in results.values()]
