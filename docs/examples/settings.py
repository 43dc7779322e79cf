"""Where a crew's settings come from: plugins' defaults, then CREW_* variables, then arguments."""

# --8<-- [start:settings]
import os

from crew_core import Crew
from crew_core.plugin import get_plugin_manager, hookimpl


class SiteDefaults:
    """A plugin of your own, in code: defaults for every crew made with it."""

    @hookimpl
    def crew_configure(self, config):
        config["crew"]["max_tries"] = 5  # a crew setting
        config["subprocess"].setdefault("env", {"OMP_NUM_THREADS": "1"})  # a worker class's option


def threads():
    return os.environ.get("OMP_NUM_THREADS")


os.environ["CREW_JOB_TIMEOUT"] = "600"  # usually set in the shell; an argument would win
with Crew(plugins=get_plugin_manager([SiteDefaults()]), stop_grace=2.0) as crew:
    print(crew.max_tries, crew.job_timeout, crew.stop_grace, crew.heartbeat_interval, crew.heartbeat_timeout)
    crew.recruit(workers=1, worker_class="subprocess")
    crew.send(threads)
    print(crew.receive(timeout=30).value)  # the subprocess class's default option reached the worker
# --8<-- [end:settings]
