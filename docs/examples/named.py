"""A named crew: what another controller needs to go on is kept in the store."""

# --8<-- [start:named]
import tempfile

from crew_core import Crew

store = tempfile.mkdtemp()  # in real use a lasting place: a folder of yours, "s3://bucket/crews"
nightly = Crew(name="nightly", store=store, worker_classes=["subprocess"])
if not nightly.resumed:  # the first run recruits and sends; a resumed one has its workers and jobs
    nightly.recruit(workers=2)
    with nightly.batch():  # one store write for the whole block instead of one per send
        ids = [nightly.send(pow, args=(2, n)) for n in range(100)]
print("sum:", sum(result.value for result in nightly.results()))
nightly.close()  # ends the named crew: its workers stop and its objects go
# --8<-- [end:named]
