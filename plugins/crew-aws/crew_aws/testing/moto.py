"""moto's server on 127.0.0.1: a real HTTP S3 (and Batch registry) for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def moto_s3() -> Iterator[str]:
    """Run moto in server mode on a free loopback port; yield its endpoint URL.

    Needs ``moto[server]``. The server serves every service moto knows (S3, Batch, ...) and keeps
    state in this process; ``POST {endpoint}/moto-api/reset`` wipes it.
    """
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
