"""moto's server on 127.0.0.1: a real HTTP S3 (and Batch registry) for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def moto_s3(own_process: bool = False) -> Iterator[str]:
    """Run moto in server mode on a free loopback port; yield its endpoint URL.

    Needs ``moto[server]``. The server serves every service moto knows (S3, Batch, ...) and keeps
    state in this process, or in a process of its own with ``own_process=True`` (benchmarks: so
    that moto's CPU is not counted as the controller's); ``POST {endpoint}/moto-api/reset``
    wipes it.
    """
    import logging

    if own_process:
        with _moto_process() as endpoint:
            yield endpoint
        return

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

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
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
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
