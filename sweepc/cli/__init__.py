"""The command line: argv in, one typed request to the API, text out.

The only layer that reads argv or prints. `app` holds the parser and the
language verbs (check, psets, graph); `build` the verbs that plan, run and
inspect (build, status, clean, results, runs, cancel).

Nothing is imported here: main() imports the command line itself, so that
a Ctrl-C while sweepc loads (say, right after Enter) is `sweepc:
interrupted` and exit 130, as at any later moment, not a traceback."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command (app.main); its exit code."""
    if argv is None:
        # a terminal or pipe that cannot hold every character (PYTHONIOENCODING=ascii,
        # an old locale): a parameter or result with an 'é' printed as \xe9, not a
        # UnicodeEncodeError traceback half-way through a table (stderr does so already)
        try:
            sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    try:
        from sweepc.cli.app import main as run
    except KeyboardInterrupt:
        sys.stderr.write("sweepc: interrupted\n")
        if argv is None:
            # The process is this command: end it here, as app.exit_now does. The
            # interpreter's own shutdown after an import cut short by a Ctrl-C
            # ended it by SIGINT (exit -2) about one time in five.
            sys.stderr.flush()
            os._exit(130)
        return 130  # = common.EXIT_INTERRUPTED
    return run(argv)


def build_parser() -> argparse.ArgumentParser:
    from sweepc.cli.app import build_parser as build

    return build()
