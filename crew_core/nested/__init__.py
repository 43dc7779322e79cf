"""Nested crews: a forwarder worker that runs an inner crew and passes its outer crew's jobs through."""
