"""The wire: store keys, the records controller and workers exchange, pickling and signing.

Both sides import it; it imports only the plugin base classes below it. A key or a record format is
built and parsed here and nowhere else."""
