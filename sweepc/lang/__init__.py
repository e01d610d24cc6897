"""The language: sweepfile text in, a checked graph.BuildGraph out.

    parser.parse(text, filename)          -> syntax.Module (every node has a Span)
    compiler.compile(module, root, path)  -> graph.BuildGraph, or SweepfileError
    project.load_graph(sweepfile)         -> both steps, from a file on disk

compile() runs four passes, one verb per module: names.resolve,
evaluate.evaluate, join.join, commands.render. Helpers they share: sweeps
(the sweep algebra), expr (where-conditions), placeholders (command
templates), resources (SLURM units), problems (diagnostics).
"""
