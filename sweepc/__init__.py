"""sweepc: a compiler for parameter sweeps.

    import sweepc
    study = sweepc.load("sweepfile")
    study.psets("grid")
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .api import Study, load
    from .errors import StateError, SweepcError, SweepfileError, UsageError

__version__ = "0.1.0"

__all__ = ["StateError", "Study", "SweepcError", "SweepfileError", "UsageError", "__version__", "load"]

_ERRORS = frozenset(("StateError", "SweepcError", "SweepfileError", "UsageError"))


def __getattr__(name: str) -> object:
    # `import sweepc` imports nothing: the API pulls in pandas, and the CLI
    # catches a Ctrl-C from its first import of its own on (cli/__init__.py)
    if name in _ERRORS:
        from . import errors

        return getattr(errors, name)
    if name in ("load", "Study"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'sweepc' has no attribute {name!r}")
