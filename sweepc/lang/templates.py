"""Pass 3b, collect(): each rule's `templates:` field -> the files it puts into every job folder.

A template is a file or a folder, relative to the project folder. A folder's
files keep their paths inside it; a trailing `.j2` is dropped from a name.
Text (UTF-8) files are jinja2 templates, parsed here once so a syntax error
is reported before anything runs; other files are copied as they are.
Rendering per pset happens later, when the jobs that will run are known
(backends/templates.py).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sweepc.errors import Diagnostic, Span, did_you_mean, listing
from sweepc.lang import syntax as s
from sweepc.lang.graph import RENDERED_LIST_NAME, RESERVED_NAMES, BuildGraph, TemplateFile
from sweepc.lang.problems import Problems
from sweepc.lang.sweeps import FILES_READ

if TYPE_CHECKING:
    import jinja2

    from sweepc.lang.join import Joined
    from sweepc.lang.names import Names

FIELD = "templates"
# What a template can use beyond the pset's own values, and so what the
# fingerprint must then hold too (see RuleSpec.template_uses).
EXTRA_USES = ("seq", "resources")
MAX_TEXT = 8 << 20  # a bigger file is copied as it is, not rendered once per job
SYNTAX_HINT = "jinja2 writes values as {{ name }} and logic as {% if ... %}...{% endif %}"


@dataclass(frozen=True, slots=True)
class Collected:
    files: Mapping[str, tuple[TemplateFile, ...]]  # per rule that has templates
    uses: Mapping[str, tuple[str, ...]]  # per rule: which of EXTRA_USES its templates mention
    diagnostics: tuple[Diagnostic, ...]


def environment() -> jinja2.Environment:
    """The one jinja2 environment templates are parsed and rendered with:
    a misspelt name is an error, nothing is escaped, files end as written."""
    import jinja2

    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def collect(module: s.Module, names: Names, joined: Joined, root: Path) -> Collected:
    """Check every rule's templates: field against the files on disk."""
    p = Problems(module)
    files: dict[str, tuple[TemplateFile, ...]] = {}
    uses: dict[str, tuple[str, ...]] = {}
    extra: list[Diagnostic] = []
    outputs = {r.name: {o.path for o in r.outputs} for r in joined.rules}
    for name, rd in names.rule_defs.items():
        outputs.setdefault(name, _declared_outputs(rd))  # the rule has a mistake of its own
    env = None
    for rd in names.rule_defs.values():
        f = next((f for f in rd.fields if f.name == FIELD), None)
        if f is None:
            continue
        found: list[TemplateFile] = []
        by_dest: dict[str, TemplateFile] = {}
        mentioned: set[str] = set()
        for it in f.items:
            v = it.value
            if it.name is not None or not isinstance(v, s.Str):
                p.error("a template is a quoted path of a file or folder", v.span, 'for example: templates: "templates/input.deck.j2", "templates/calc/"')
                continue
            listed = _list(p, v, root)
            for src, dest in listed:
                full = root / src
                text = _read_text(full)
                tf = TemplateFile(src, dest, text is not None, v.span)
                clash = _clash(dest, src, rd.name, by_dest, outputs.get(rd.name, set()))
                if clash:
                    p.error(clash[0], v.span, clash[1])
                    continue
                by_dest[dest] = tf
                found.append(tf)
                if text is not None:
                    env = env or environment()
                    d = _syntax(env, text, src, rd.name)
                    if d is not None:
                        extra.append(d)
                    mentioned.update(u for u in EXTRA_USES if u in text)
        files[rd.name] = tuple(found)
        uses[rd.name] = tuple(u for u in EXTRA_USES if u in mentioned)
    return Collected(files, uses, tuple(p.diags) + tuple(extra))


def attach(g: BuildGraph, collected: Collected) -> BuildGraph:
    """The graph with each rule's template files in its RuleSpec."""
    if not collected.files:
        return g
    rules = tuple(replace(r, templates=collected.files.get(r.name, ()), template_uses=collected.uses.get(r.name, ())) for r in g.rules)
    return replace(g, rules=rules)


def _declared_outputs(rd: s.RuleDef) -> set[str]:
    out: set[str] = set()
    for f in rd.fields:
        if f.name in ("output", "results"):
            for it in f.items:
                v = it.value
                if isinstance(v, s.Call) and v.func == "temp" and len(v.args) == 1:
                    v = v.args[0].value
                if isinstance(v, s.Str) and v.value.strip():
                    out.add(os.path.normpath(v.value.strip()))
    return out


def _list(p: Problems, v: s.Str, root: Path) -> list[tuple[str, str]]:
    """(project-relative source, job-relative destination) of every file a template item names."""
    raw = v.value.strip()
    norm = os.path.normpath(raw) if raw else ""
    if not raw or os.path.isabs(raw) or norm == ".." or norm.startswith("../") or norm == ".":
        p.error(
            "a template is a path inside the project folder",
            v.span,
            "templates are written into each job's folder under their own names; keep them in the project, e.g. \"templates/input.deck.j2\"",
        )
        return []
    full = root / norm
    FILES_READ.append(full)  # what is there decides the graph (its cache: lang/project.py)
    try:
        st = os.stat(full)
    except OSError as e:
        missing = isinstance(e, FileNotFoundError) or e.errno == errno.ENOTDIR
        p.error(
            f"template '{raw}' does not exist" if missing else f"template '{raw}' cannot be read: {e.strerror}",
            v.span,
            "template paths are relative to the project folder (the sweepfile's folder)",
        )
        return []
    if stat.S_ISDIR(st.st_mode):
        out: list[tuple[str, str]] = []
        for top, dirs, names in os.walk(full):
            dirs.sort()
            for n in sorted(names):
                if not os.path.isfile(os.path.join(top, n)):
                    continue  # a FIFO, a socket, a dangling link: nothing to copy
                rel = os.path.relpath(os.path.join(top, n), full)
                FILES_READ.append(full / rel)
                out.append((os.path.join(norm, rel), _dest(rel)))
        if not out:
            p.error(f"template folder '{raw}' is empty", v.span, "put the files every job folder should get into it, or remove it from templates:")
        return out
    if not stat.S_ISREG(st.st_mode):
        p.error(f"template '{raw}' is not a file or a folder", v.span, "a template is a file, or a folder of files, to copy into every job's folder")
        return []
    return [(norm, _dest(os.path.basename(norm)))]


def _dest(rel: str) -> str:
    return rel[:-3] if rel.endswith(".j2") and len(os.path.basename(rel)) > 3 else rel


def _clash(dest: str, src: str, rule: str, by_dest: Mapping[str, TemplateFile], outputs: set[str]) -> tuple[str, str] | None:
    """(message, hint) when `dest` cannot be written into the job folder, else None."""
    rename = "give every template its own name in the job folder"
    if dest in by_dest:
        return f"two templates write '{dest}' into the job folder: '{by_dest[dest].source}' and '{src}'", rename
    if dest in outputs:
        return (
            f"template '{src}' writes '{dest}', which is an output of rule '{rule}'",
            "a template is written before the command runs and an output by the command; rename one of them",
        )
    if dest in RESERVED_NAMES or dest == RENDERED_LIST_NAME:
        return f"template '{src}' writes '{dest}', a file sweepc writes itself", "rename the template"
    parts = dest.split("/")
    for k in range(1, len(parts)):
        if "/".join(parts[:k]) in by_dest or "/".join(parts[:k]) in outputs:
            return f"template '{src}' needs a folder '{'/'.join(parts[:k])}', which is a file of its own in the job folder", rename
    if any(d.startswith(dest + "/") for d in by_dest):
        return f"template '{src}' writes a file '{dest}' where another template needs a folder", rename
    return None


def _read_text(path: Path) -> str | None:
    """The file's text, or None when it is not UTF-8 text (copied as it is)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
            if b"\0" in head or os.fstat(f.fileno()).st_size > MAX_TEXT:
                return None
            data = head + f.read()
    except OSError:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _syntax(env: jinja2.Environment, text: str, src: str, rule: str) -> Diagnostic | None:
    import jinja2

    try:
        # compiled, not only parsed: an unknown filter or test is found when the
        # code is generated (TemplateAssertionError, a TemplateSyntaxError), and
        # escaped the check as a traceback while the build prepared its jobs
        tree = env.parse(text, name=src, filename=src)
        env.compile(tree, name=src, filename=src)
    except jinja2.TemplateSyntaxError as e:
        line = e.lineno or 1
        hint = SYNTAX_HINT
        unknown = re.match(r"No (filter|test) named '([^']*)'", e.message or "")
        if unknown:  # (its own hint: the syntax is right)
            known = env.filters if unknown[1] == "filter" else env.tests
            hint = did_you_mean(unknown[2], known) or f"jinja2's {unknown[1]}s are: {listing(sorted(known))}"
        return Diagnostic(e.message or "syntax error", Span(line, 0, line, 0), f"{hint} (template of rule '{rule}')", src, source=text)
    return _other_file(tree, text, src, rule)


def _other_file(tree: jinja2.nodes.Template, text: str, src: str, rule: str) -> Diagnostic | None:
    """A template that reads another template ({% include %}, {% import %},
    {% extends %}): not supported, each template is rendered on its own
    (it failed when rendered, "no loader for this environment specified")."""
    from jinja2 import nodes

    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        tag = {nodes.Include: "include", nodes.Extends: "extends"}.get(type(node), "import")
        line = node.lineno or 1
        return Diagnostic(
            f"{{% {tag} %}} is not supported: a template cannot read another template", Span(line, 0, line, 0),
            f"each template is rendered on its own: write what it needs from the other file into this one (template of rule '{rule}')", src, source=text,
        )
    return None
