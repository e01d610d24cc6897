"""The Python API. The CLI is a thin layer over it.

    import sweepc
    study = sweepc.load("sweepfile")      # or a directory
    study.psets("grid")                   # DataFrame of psets with hashes
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError, did_you_mean, listing
from .graph import BuildGraph
from .project import find_sweepfile, load_graph

if TYPE_CHECKING:
    import pandas as pd


def load(path: str | Path = "sweepfile") -> Study:
    """Load a project from its sweepfile (or the folder that holds it).

    Raises SweepfileError (with file:line:col, the line, a caret and a hint for
    each mistake) or UsageError."""
    return Study(load_graph(find_sweepfile(path)))


class Study:
    def __init__(self, graph: BuildGraph) -> None:
        self.graph = graph

    @property
    def root(self) -> Path:
        return self.graph.root

    def psets(self, sweep: str | None = None) -> pd.DataFrame:
        """The expanded psets of one sweep (or of every sweep, with a _sweep column),
        with _pset_hash and _pset_seq."""
        import pandas as pd

        g = self.graph
        if sweep is not None and sweep not in g.sweeps:
            names = list(g.sweeps) + list(g.params)
            if sweep in g.params:
                names = [sweep]
            else:
                raise UsageError(f"unknown sweep '{sweep}'", did_you_mean(sweep, names) or f"sweeps: {listing(g.sweeps)}")
        if sweep is None and not g.sweeps:
            return pd.DataFrame(columns=["_pset_hash", "_pset_seq"])
        chosen = [sweep] if sweep is not None else list(g.sweeps)
        frames = []
        for name in chosen:
            sw = g.sweeps[name]
            df = pd.DataFrame.from_records(list(sw.psets), columns=list(sw.keys))
            df["_pset_hash"] = sw.hashes
            df["_pset_seq"] = range(len(sw.psets))
            if sweep is None:
                df.insert(0, "_sweep", name)
            frames.append(df)
        # several sweeps can have different parameters: keep ints ints next to gaps
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True).convert_dtypes()
