"""The key layout and the records that controller and workers exchange through a store (protocol 5).

Every object has exactly one writer. Under the crew's prefix ``<crew>/``:

``workers/<name>/<incarnation>/<seq>``
    task records for one launch ("incarnation") of a worker, written by the controller: a
    :class:`Batch` of calls, a :class:`Stop` or a :class:`Revoke`. ``seq`` is a crew-wide counter
    (12 digits), so a worker finds everything new with one listing after the last key it read.
``inbox/<seq>``
    the :class:`ResultBatch` answering task ``seq``, written by the worker that ran it.
``inbox/<seq>.<part>``
    part ``part`` (1, 2, ...) of the answer to task ``seq``: a forwarder (a worker running an
    inner crew, see ``forwarder.py``) answers each job of a batch as it finishes, in parts.
``inbox/refused.<name>.<incarnation>.<seq>.<nonce>``
    a :class:`ResultBatch` with no outcomes: the worker found a record at ``<seq>`` under its
    prefix that it refused (not signed for that key: planted) or that was gone before it read it.
    The number in such a key is anyone's, so the worker says so under a key of its own, never
    under ``inbox/<seq>``, which may be another worker's answer (``nonce``: random, so a refusal
    planted beforehand under the same name is not deleted with the real one).
``inbox/beat.<name>.<incarnation>.<n>``
    heartbeat ``n`` of a worker (a new key each time: the listing itself shows the beat).
``inbox/exit.<name>.<incarnation>``
    the worker's :class:`ExitNote`, written as it leaves.
``data/<digest>``
    an object put once with ``Crew.put`` and read by any worker (content-addressed).
``args/<digest>.<n>``
    a job's pickled arguments, when they are too large to keep in the controller's memory
    (``args_memory``): written by ``send``, read by the worker that runs the job (its task's
    :class:`Call` names the key), deleted once no job in flight has those arguments.
``lease``
    the controller's :class:`Lease`, renewed every minute or so: a worker that has not seen it
    renewed for its ``lease_timeout`` (standing still, gone, or not signed by the crew: anyone who
    can write the store can delete it) leaves, so no worker outlives its controller.

A named crew (``Crew(name=...)``) also keeps what another controller needs to go on after its
own dies (see ``durable.py``):

``journal/<seq>``
    a :class:`JobBatch`: jobs accepted by ``send``, written before ``send`` returns.
``received/<seq>``
    a :class:`Receipt`: ids of jobs whose results the user has received, kept while the run
    lives; every few are merged into one that names runs of ids (see ``durable/receipts.py``).
``verdicts/<seq>``
    a :class:`Verdicts` record: results the controller made itself (a job out of tries, a launch
    refused ``max_tries`` times, a cancel, a timeout the worker could not stop, a job no worker is
    left for), written before the user can have them (see ``verdicts.py``).
``roster/<name>``
    a :class:`RosterEntry` (JSON): how to make the worker again, and its current incarnation.
``claim/<epoch>``
    a :class:`ControllerClaim` (JSON), created (never replaced) with the store's create-only write by the
    controller that opens the crew as its ``epoch``-th: of controllers opening it at the same
    instant, only the one that creates the key goes on (see ``claim.py``).

Every crew also notes where its workers run, so that ``crew stop`` can find them on their
backends after the controller is gone (even those still queued, which never read the lease):

``places/<worker class>.<digest>``
    ``{"worker_class": ..., "place": ...}`` (JSON): one :meth:`Worker.place` of the crew's workers.

Everything a controller must notice lies under ``inbox/``, so one listing per poll, with
``start_after`` past the results already collected, serves the whole crew whatever its size. The
controller deletes what it has read, in batches. What the controller writes for its successor
(journal, receipts, verdicts, roster) lies outside it: only a resuming controller reads it, and no
poll pays for listing it.

The protocol's parts live in three modules, all re-exported here (``protocol.X`` is how the rest
of crew names them): ``keys.py`` builds and parses every key, ``records.py`` defines and encodes
every record and holds the protocol's version, ``worker_args.py`` is a worker's command line.
"""

from __future__ import annotations

from crew_core.plugin.launches import LABEL_ENV as LABEL_ENV  # where plugins found them before engine v2
from crew_core.plugin.launches import LaunchSeen as LaunchSeen
from crew_core.plugin.launches import crew_label as crew_label
from crew_core.plugin.launches import launch_in as launch_in
from crew_core.wire.keys import *  # noqa: F403
from crew_core.wire.records import *  # noqa: F403
from crew_core.wire.worker_args import *  # noqa: F403
