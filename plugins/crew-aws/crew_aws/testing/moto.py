"""moto's server on 127.0.0.1: a real HTTP S3 (and Batch registry) for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def moto_s3(own_process: bool = False) -> Iterator[str]:
    """Run moto in server mode on a free loopback port; yield its endpoint URL.

    Needs ``moto[server]``. The server serves every service moto knows (S3, Batch, ...) and keeps
    state in this process, or in a process of its own with ``own_process=True`` (benchmarks: so
    that moto's CPU is not counted as the controller's); ``POST {endpoint}/moto-api/reset``
    wipes it. Its object PUTs are serialised (:func:`serialise_object_puts`): conditional
    writes are then atomic, as on S3.
    """
    import logging

    if own_process:
        with _moto_process() as endpoint:
            yield endpoint
        return

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    serialise_object_puts()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def _moto_process(timeout: float = 60.0) -> Iterator[str]:
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve = "from crew_aws.testing.moto import serve; serve()"
    command = [sys.executable, "-c", serve, "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.05)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def serialise_object_puts() -> None:
    """Make moto's server handle object PUTs one at a time, so that ``If-None-Match`` is atomic.

    moto 5.2 checks ``If-None-Match: *``, then writes, without a lock: two PUTs of one key at the
    same instant can both pass the check (and a PUT racing another can fail with a 500), where
    S3 lets exactly one of them create the key. One lock around moto's PUT handler gives S3's
    guarantee. Idempotent; affects moto in this process only.
    """
    import functools
    import threading

    from moto.s3.responses import S3Response

    original = S3Response.put_object
    if getattr(original, "serialised_by_crew", False):
        return
    lock = threading.Lock()

    @functools.wraps(original)
    def put_object(self: S3Response) -> Any:
        with lock:
            return original(self)

    put_object.serialised_by_crew = True  # type: ignore[attr-defined]
    S3Response.put_object = put_object  # type: ignore[method-assign]


def serve() -> None:
    """``python -m moto.server`` with :func:`serialise_object_puts` (arguments from ``sys.argv``)."""
    from moto.server import main

    serialise_object_puts()
    main()
