"""dev.py's last check: a process the tests started that outlives them fails the run, and is ended."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dev


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_a_marked_process_left_running_fails_the_run_and_is_killed():
    name, value = "CREW_TEST_SESSION", uuid.uuid4().hex
    left = subprocess.Popen(["sleep", "300"], env={**os.environ, name: value}, start_new_session=True)
    try:
        with pytest.raises(SystemExit, match="outlived them"):
            dev.check_nothing_left(f"{name}={value}".encode(), grace=1)
        assert left.wait(timeout=30) == -9
    finally:
        left.kill()
        left.wait()
    dev.check_nothing_left(f"{name}={value}".encode(), grace=1)  # nothing left: passes
