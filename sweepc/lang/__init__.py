"""The language: sweepfile text in, a BuildGraph (psets, rules, jobs, DAG) out.

    parser.parse(text, filename) -> syntax.Module   (the lark grammar stays in parser.py)
    compiler.compile(module, ...) -> graph.BuildGraph, every independent error at once
    project.load_graph(path)      -> find the sweepfile, read it, parse, compile

Errors are data (errors.Diagnostic) rendered once, by the CLI.
"""
