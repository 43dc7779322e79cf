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
    writes are then atomic, as on S3. It logs every S3 request it serves, whoever made it:
    :func:`served_requests` reads the log.
    """
    import logging

    if own_process:
        with _moto_process() as endpoint:
            yield endpoint
        return

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    serialise_object_puts()
    log_requests()

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
    log_requests()
    main()


#: The path that answers with the request log instead of serving S3 (``?clear=1`` empties it).
_LOG_PATH = "/_crew/requests"
_served: list[tuple[str, str]] = []  # (verb, path) of every S3 request served, in order


def served_requests(endpoint: str, clear: bool = False) -> list[tuple[str, str]]:
    """The S3 requests moto's server at ``endpoint`` has served, as ``(verb, "/bucket/key")``.

    Every party's requests are there (controller, workers in other processes, the test itself),
    so a test or benchmark counts what S3 would bill. Verbs: ``LIST``, ``GET``, ``PUT``,
    ``DELETE`` (one per request, a ``DeleteObjects`` of many keys included), ``HEAD``,
    ``MULTIPART`` (creating or completing an upload), ``PART``. ``clear=True`` empties the log
    after reading it. Works for :func:`moto_s3` in either mode.
    """
    import json
    import urllib.request

    url = f"{endpoint}{_LOG_PATH}{'?clear=1' if clear else ''}"
    with urllib.request.urlopen(url, timeout=30) as answer:
        return [(verb, path) for verb, path in json.load(answer)]


def _verb(method: str, query: str, path: str) -> str:
    """The billing class of an S3 request."""
    fields = {part.partition("=")[0] for part in query.split("&") if part}
    if method == "GET":
        return "LIST" if "list-type" in fields or path.strip("/").count("/") == 0 else "GET"
    if method == "PUT":
        return "PART" if "partNumber" in fields else "PUT"
    if method == "POST":
        return "DELETE" if "delete" in fields else "MULTIPART" if fields & {"uploads", "uploadId"} else "POST"
    return method  # DELETE, HEAD


def log_requests() -> None:
    """Make moto's server (in this process) log each S3 request it serves; see
    :func:`served_requests`. Idempotent. Requests to other services (Batch, Secrets Manager,
    moto's own API) are not logged."""
    import json
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.__call__
    if getattr(original, "logged_by_crew", False):
        return
    lock = threading.Lock()

    def __call__(self: DomainDispatcherApplication, environ: dict[str, Any], start_response: Any) -> Any:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        query = environ.get("QUERY_STRING", "")
        if path == _LOG_PATH:
            with lock:
                body = json.dumps(_served).encode()
                if "clear=1" in query:
                    _served.clear()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        s3 = not (path.startswith(("/moto-api", "/v1/")) or "HTTP_X_AMZ_TARGET" in environ or path == "/")
        if s3:
            with lock:
                _served.append((_verb(method, query, path), path))
        return original(self, environ, start_response)

    __call__.logged_by_crew = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.__call__ = __call__  # type: ignore[method-assign]
