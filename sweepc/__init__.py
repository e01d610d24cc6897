"""sweepc: a compiler for parameter sweeps.

    import sweepc
    study = sweepc.load("sweepfile")
    study.psets("grid")
"""

from .errors import StateError, SweepcError, SweepfileError, UsageError

__version__ = "0.1.0"

__all__ = ["StateError", "Study", "SweepcError", "SweepfileError", "UsageError", "__version__", "load"]


def __getattr__(name: str) -> object:
    # The API pulls in pandas; keep `import sweepc` (and the CLI's start) light.
    if name in ("load", "Study"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
