"""The command line: argv in, one typed request to the API, text out.

The only layer that reads argv or prints. `app` holds the parser and the
language verbs (check, psets, graph); `build` the verbs that plan, run and
inspect (build, status, clean, results, runs, cancel)."""

from sweepc.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
