"""`sweepc report` and `sweepc plot`: pictures of the results (sweepc[report])."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from sweepc.cli.common import EXIT_OK, study_of, text_tables

if TYPE_CHECKING:
    from sweepc.api import Study


def register(sub: Any) -> None:
    c = sub.add_parser("report", help="one self-contained HTML page: runs, statuses, failures, results plotted")
    c.add_argument("-o", "--output", metavar="FILE", default="report.html", help="where to write it (default: report.html)")
    c.set_defaults(func=cmd_report)

    c = sub.add_parser("plot", help="one picture of a result against a parameter (PNG or SVG)")
    c.add_argument("y", metavar="Y", help="a numeric result column")
    c.add_argument("--x", required=True, metavar="A", help="the parameter on the x axis")
    c.add_argument("--by", metavar="B", help="one line per value of B (default: the other varied parameter with the fewest values; 'none' for one line)")
    c.add_argument("--rule", metavar="R", help="one rule's results (default: the one table)")
    c.add_argument("--where", metavar="EXPR", help="only psets for which EXPR holds")
    c.add_argument("-o", "--output", metavar="FILE", help="a .png or .svg file (default: Y-vs-A.png)")
    c.set_defaults(func=cmd_plot)


def _study(args: argparse.Namespace) -> Study:
    study = study_of(args)
    study.refresh()  # take in the completion records of SLURM jobs first
    return study


def cmd_report(args: argparse.Namespace) -> int:
    text_tables()
    from sweepc.api import write_report
    from sweepc.lang.project import forget

    study = _study(args)
    study.refuse_output(args.output)
    data = study.report_data()
    # the tables are made: the graph is not needed to draw them (at 100k psets ~60 MB)
    forget(study.graph)
    del study
    path = write_report(data, args.output)
    sys.stderr.write(f"sweepc: wrote {path}\n")
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    text_tables()
    from sweepc.api import write_plot
    from sweepc.errors import UsageError
    from sweepc.lang.project import forget

    study = _study(args)
    if args.output is not None:
        study.refuse_output(args.output)
    data = study.plot_data(args.y, args.x, by=args.by, rule=args.rule, where=args.where)
    if args.where is not None and data.frame.empty:
        raise UsageError(f"no pset matches --where '{args.where}'", "see the psets with: sweepc psets")
    forget(study.graph)  # the table is made: the graph is not needed to draw it
    del study
    path = write_plot(data, args.output)
    sys.stderr.write(f"sweepc: wrote {path}\n")
    return EXIT_OK
