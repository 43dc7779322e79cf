"""A module of your own that the initializer example imports: workers import it too.

What ``load`` sets up stays in this module, in each worker process, for every job there.
"""

import os

_model = None


def load(scale):
    global _model
    _model = {"scale": scale, "loaded_by": os.getpid()}  # a model read from disk, say


def predict(x):
    return x * _model["scale"], _model["loaded_by"] == os.getpid()
