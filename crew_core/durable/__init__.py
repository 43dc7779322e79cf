"""Named crews: what is kept in the store so that another controller can go on after its own dies.

The journal of accepted jobs and receipts, the results a controller made itself, the atomic claim on
a crew's name, and finding and stopping crews whose controller is gone (``crew ps``, ``crew stop``)."""
