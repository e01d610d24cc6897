"""The command line: the only place that reads argv or prints."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from sweepc import __version__
from sweepc.errors import MachineError, SweepcError, SweepfileError, machine_error
from sweepc.cli import common as cli_common
from sweepc.cli.common import EXIT_INTERRUPTED, EXIT_MACHINE, EXIT_OK, EXIT_USAGE, graph_of, text_tables

if TYPE_CHECKING:
    import pandas as pd

    from sweepc.lang.graph import BuildGraph


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits with 2 too; keep its usage line and our wording
        self.print_usage(sys.stderr)
        sys.stderr.write(f"sweepc: error: {message}\n")
        if message.endswith(": expected one argument"):
            # `--psets -10:` (the last ten): argparse takes -10: for an option
            names = message.removeprefix("argument ").partition(":")[0].split("/")
            argv = self.argv
            after = [argv[k + 1] for k, a in enumerate(argv[:-1]) if a in names]
            if after and after[-1].startswith("-"):
                sys.stderr.write(f"  hint: a value that starts with '-' goes after '=': {names[-1]}={after[-1]}\n")
        raise SystemExit(EXIT_USAGE)

    argv: list[str] = []  # what parse_args() was given (for error())


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    _Parser.argv = list(argv if argv is not None else sys.argv[1:])  # (the subcommands' parsers are _Parsers too)
    return parser.parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sweepc", description="A compiler for parameter sweeps.")
    p.add_argument("--version", action="version", version=f"sweepc {__version__}")
    p.add_argument("-f", "--file", metavar="FILE", help="the sweepfile (default: ./sweepfile)")
    p.add_argument("-C", "--directory", metavar="DIR", help="the project in DIR (paths given and printed stay relative to here)")
    p.add_argument("-D", "--define", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter (-D a='[1, 2]') or a csv()/npy() keyword (-D rows.start=3); repeatable")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser("check", help="parse and compile the sweepfile, report every error")
    c.set_defaults(func=cmd_check)

    c = sub.add_parser("psets", help="the expanded psets with their hashes")
    c.add_argument("sweep", nargs="?", metavar="SWEEP", help="one sweep or parameter (default: every sweep, and every parameter a rule runs over)")
    c.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default: table)")
    c.set_defaults(func=cmd_psets)

    c = sub.add_parser("graph", help="the rule graph (or the job graph) as dot or mermaid")
    c.add_argument("--jobs", action="store_true", help="one node per job instead of one per rule")
    c.add_argument("--format", choices=("dot", "mermaid"), default="dot", help="output format (default: dot)")
    c.set_defaults(func=cmd_graph)

    from sweepc.cli import build as cli_build

    cli_build.register(sub)
    from sweepc.cli import report as cli_report

    cli_report.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code. With no argv (the command line's
    own, `sweepc ...`) the process ends here (exit_now())."""
    code = _main(argv)
    # (threads: the interpreter's own exit joins them; a profiler or tracer,
    # as `python -m cProfile -m sweepc`, writes its figures after main returns)
    if argv is None and threading.active_count() == 1 and sys.getprofile() is None and sys.gettrace() is None:
        exit_now(code)
    return code


def exit_now(code: int) -> NoReturn:
    """End the process once its one command is done, as sys.exit would,
    without freeing every object one at a time first: the graph, the
    planner's columns and the store's rows of a 100k-pset study took ~0.3 s
    to tear down, on every command. What sys.exit does that matters is done
    here: the atexit functions, then stdout and stderr flushed (a closed
    pipe is the reader's choice: nothing more is said). The command is done:
    a Ctrl-C or SIGTERM from here on is let go (one during the atexit
    functions was a KeyboardInterrupt traceback and death by SIGINT)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # (only the main thread may)
            signal.signal(sig, signal.SIG_IGN)
    atexit._run_exitfuncs()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except BrokenPipeError:
            pass
        except (OSError, ValueError) as e:  # e.g. stdout on a full disk
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"sweepc: cannot write the output ({getattr(e, 'strerror', None) or e})\n")
                sys.stderr.flush()
            code = code or EXIT_MACHINE
    os._exit(code)


def _main(argv: Sequence[str] | None) -> int:
    try:
        return _command(argv)
    except KeyboardInterrupt:  # (after the command: while the graph cache was written)
        print("sweepc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _command(argv: Sequence[str] | None) -> int:
    try:
        args = _parse(argv)
        # the command line as typed, for the runs table (also under python -m sweepc)
        args.command_line = ["sweepc", *(sys.argv[1:] if argv is None else argv)]
        if argv is None:  # the process ends with this command: see cli.build._TermAsInterrupt
            from sweepc.cli import build as cli_build

            cli_build.DEAF_AFTER_STOP = True
            cli_common.ONE_COMMAND = True
        code: int = args.func(args)
        return code
    except SweepfileError as e:
        print(e.render(), file=sys.stderr)
        n = len(e.diagnostics)
        if n > 1:
            print(f"{n} errors", file=sys.stderr)
        return EXIT_USAGE
    except MachineError as e:
        print(f"sweepc: {e}", file=sys.stderr)
        return EXIT_MACHINE
    except SweepcError as e:
        print(f"sweepc: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sweepc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:
        # e.g. `sweepc psets > file` on a full disk: a message, not a traceback
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise
        err = machine_error(e.filename or "the output", os.path.dirname(e.filename or "") or ".", e, "then try again")
        _drop_stdout()
        print(f"sweepc: {err}", file=sys.stderr)
        return EXIT_MACHINE
    finally:
        project = sys.modules.get("sweepc.lang.project")  # (never imported: nothing to wait for)
        if project is not None:
            project.wait_writes()  # the compiled-graph cache, written while the command ran


def _drop_stdout() -> None:
    """What stdout still buffers goes nowhere: flushing it at exit would fail again."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def cmd_check(args: argparse.Namespace) -> int:
    g = graph_of(args)
    print(
        f"{g.sweepfile.name}: ok: {_n(len(g.params), 'parameter')}, {_n(len(g.sweeps), 'sweep')}, "
        f"{_n(len(g.rules), 'rule')}, {_n(len(g.jobs), 'job')}"
    )
    from sweepc.cli.build import pending_notes
    from sweepc.api import Study

    sys.stdout.writelines(pending_notes(Study(g)))
    return EXIT_OK


def _n(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


def cmd_psets(args: argparse.Namespace) -> int:
    text_tables()  # before anything imports pandas
    from sweepc.api import Study
    from sweepc.results.table import write

    from sweepc.cli.build import pending_notes

    study = Study(graph_of(args))
    sys.stderr.writelines(pending_notes(study))
    df = study.psets(args.sweep)
    if args.format == "table":
        sys.stdout.write(write(df, args.format, None) or "")
        return EXIT_OK
    # csv and json: each value as the sweepfile has it, not as its column's
    # dtype (a = [1, 2.5] gave 1.0); json writes inf and nan as Python's
    # json does (Infinity, NaN), as pset.json does, not as null
    rows = _psets_as_hashed(study.graph, df, args.sweep)
    if args.format == "json":
        from sweepc.values import encode_scalar

        sys.stdout.writelines(_json_rows(rows, encode_scalar))
    else:
        import pandas as pd

        sys.stdout.write(write(pd.DataFrame(rows, columns=list(df.columns), dtype=object), "csv", None) or "")
    return EXIT_OK


def _psets_as_hashed(g: BuildGraph, df: pd.DataFrame, sweep: str | None) -> list[dict[str, Any]]:
    """The rows of study.psets() with every parameter's value taken from the
    graph (found by the row's sweep and _pset_seq): an int stays an int next
    to floats, a gap (a parameter of another sweep) is None."""
    cols = [str(c) for c in df.columns]
    names = df["_sweep"].tolist() if "_sweep" in df.columns else [sweep] * len(df)
    seqs = [int(k) for k in df["_pset_seq"].tolist()]
    others = {c: [_plain(v) for v in df[c].tolist()] for c in cols if c.startswith("_")}
    rows: list[dict[str, Any]] = []
    for i, (name, seq) in enumerate(zip(names, seqs)):
        pset = g.sweeps[name].psets[seq] if name in g.sweeps else {name: g.params[name][seq]}
        rows.append({c: others[c][i] if c in others else pset.get(c) for c in cols})
    return rows


def _plain(v: Any) -> Any:
    """A cell of a bookkeeping column as a Python value: numpy's scalars as
    Python's, pandas' gaps as None."""
    import pandas as pd

    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    item = getattr(v, "item", None)
    return item() if callable(item) and not isinstance(v, str) else v


def _json_rows(rows: list[dict[str, Any]], enc: Callable[[object], str]) -> Iterator[str]:
    """The rows as one JSON list (compact, as results --format json writes it)."""
    yield "["
    for i, row in enumerate(rows):
        yield ("," if i else "") + "{" + ",".join(f"{enc(k)}:{enc(v)}" for k, v in row.items()) + "}"
    yield "]\n"


def cmd_graph(args: argparse.Namespace) -> int:
    from sweepc.lang.render_graph import render_graph

    sys.stdout.write(render_graph(graph_of(args), jobs=args.jobs, fmt=args.format))
    return EXIT_OK


