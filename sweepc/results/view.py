"""`sweepc view DIR`: a tree of symlinks named by parameters (signac's view).

    DIR/compute/a=1/b=88 -> ../../../calc/compute/88/88b0...

One level per parameter, in the rule's parameter order; a rule without
parameters is one link, DIR/<rule>. Links are relative, so moving the
project (with DIR inside it) keeps them valid. Only jobs whose folder exists
are linked.

Names: `name=value`, the value written as in the sweepfile (true/false, ints,
floats as Python prints them, strings as they are, but in double quotes when
they would read as a number or a bool: "1" is not 1), then every byte that is
not a letter, a digit or one of `. _ - + , @ =` is escaped as `%XX` (UTF-8,
upper-case hex, like a URL): `/` is `%2F`, a space `%20`, `%` itself `%25`.
A name longer than 255 bytes (the file-name limit) is refused.

DIR/.sweepc-view.json lists every link and folder the view made; running
view again removes the links of psets that are gone and never touches
anything it did not make.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sweepc.errors import UsageError
from sweepc.lang.graph import BuildGraph, Job
from sweepc.plan.store import STATE_DIR
from sweepc.values import Scalar

MANIFEST = ".sweepc-view.json"
MANIFEST_VERSION = 1
NAME_MAX = 255
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+,@=")


@dataclass(frozen=True, slots=True)
class ViewResult:
    links: int  # links in the view now
    made: int  # new or changed links
    removed: int  # links of psets that are gone (or of rules not selected now)


def escape(text: str) -> str:
    """`text` safe as one file name component (see the module's docstring)."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in text.encode("utf-8"))


def value_text(v: Scalar) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str) and _reads_as_other(v):
        return '"' + v + '"'  # ("1" and 1, "true" and true are two psets: x=%221%22 and x=1)
    return repr(v) if isinstance(v, float) else str(v)


def _reads_as_other(text: str) -> bool:
    """Whether a string value would be written like a number or a bool."""
    if text in ("true", "false") or text.startswith('"'):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def link_path(job: Job) -> str:
    """The job's link, relative to the view folder."""
    parts = [job.rule]
    for k, v in job.params.items():
        name = escape(f"{k}={value_text(v)}")
        if len(name) > NAME_MAX:
            raise UsageError(
                f"the view name of parameter '{k}' for {job.label} would be {len(name)} bytes long; file names are limited to {NAME_MAX}",
                "use a shorter value, or leave this rule out: sweepc view DIR --rule OTHER",
            )
        parts.append(name)
    return "/".join(parts)


def make_view(g: BuildGraph, jobs: Sequence[int], dest: Path) -> ViewResult:
    """Make or update the view in `dest` for the given jobs (ids)."""
    try:
        return _make_view(g, jobs, dest.absolute())
    except OSError as e:  # a path too long for the file system, no permission, a full disk
        raise UsageError(f"cannot make the view in {dest}: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")) from None


def _make_view(g: BuildGraph, jobs: Sequence[int], dest: Path) -> ViewResult:
    root = g.root.resolve()
    wd = g.workdir_path.resolve()
    real = dest.resolve()
    state = root / STATE_DIR  # (a view in it mixed its links with the state store's files)
    if real == root or real == wd or _inside(real, wd) or _inside(root, real) or real == state or _inside(real, state):
        raise UsageError(f"refusing to make a view in {dest}: it would mix with the project's own files", "choose a new folder, e.g. sweepc view view/")
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a folder")
    old_links, old_dirs = _read_manifest(dest)
    want: dict[str, str] = {}  # link path (relative to dest) -> link target
    for i in jobs:
        job = g.jobs[i]
        folder = wd / job.reldir
        if not folder.is_dir():
            continue
        rel = link_path(job)
        if rel in want:  # (two psets under one name: the view showed one of them, and said nothing)
            other = next(g.jobs[k].label for k in jobs if k != i and link_path(g.jobs[k]) == rel)
            raise UsageError(f"{job.label} and {other} would have the same name in the view: {rel}",
                             "name one of the two values differently in the sweepfile")
        want[rel] = os.path.relpath(folder, real / os.path.dirname(rel))
    dirs = sorted({str(p) for rel in want for p in Path(rel).parents if str(p) != "."})
    # every refusal before the first change
    for d in dirs:
        p = dest / d
        if os.path.lexists(p) and (p.is_symlink() or not p.is_dir()):
            if not (d in old_links and p.is_symlink()):
                raise UsageError(f"refusing to replace {p}: sweepc view did not make it", "move it away, or choose another folder")
    for rel in want:
        p = dest / rel
        if os.path.lexists(p) and rel not in old_links:
            raise UsageError(f"refusing to replace {p}: sweepc view did not make it", "move it away, or choose another folder")
    return _update(dest, want, dirs, old_links, old_dirs)


def _update(dest: Path, want: dict[str, str], dirs: list[str], old_links: set[str], old_dirs: set[str]) -> ViewResult:
    removed = 0
    for rel in sorted(old_links - set(want), key=lambda r: -r.count("/")):
        p = dest / rel
        if p.is_symlink():
            p.unlink()
            removed += 1
    made_dirs = set(old_dirs)
    for d in dirs:
        p = dest / d
        if p.is_symlink():  # a link of ours where a folder is now needed (a rule gained parameters)
            p.unlink()
        if not p.is_dir():
            p.mkdir(parents=True)
            made_dirs.add(d)
    made = 0
    for rel, target in want.items():
        link = dest / rel
        if link.is_symlink() and os.readlink(link) == target:
            continue
        tmp = link.with_name(link.name + ".sweepc-tmp")
        if os.path.lexists(tmp):
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)
        made += 1
    # folders the view made that are empty now go too; deepest first
    for d in sorted(made_dirs - set(dirs), key=lambda r: -r.count("/")):
        try:
            (dest / d).rmdir()
            made_dirs.discard(d)
        except OSError:
            pass  # not empty (something of someone else's) or already gone
    made_dirs &= set(dirs) | {d for d in made_dirs if (dest / d).is_dir()}
    _write_manifest(dest, sorted(want), sorted(made_dirs))
    return ViewResult(len(want), made, removed)


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
        return True
    except ValueError:
        return False


def _read_manifest(dest: Path) -> tuple[set[str], set[str]]:
    try:
        doc = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        return set(), set()
    if not isinstance(doc, dict) or doc.get("sweepc_view") != MANIFEST_VERSION:
        return set(), set()
    return _paths(doc.get("links")), _paths(doc.get("dirs"))


def _paths(xs: object) -> set[str]:
    """Relative paths from a manifest; anything odd (an edited file) counts as none."""
    if not isinstance(xs, list) or not all(isinstance(x, str) and x and ".." not in x.split("/") and not x.startswith("/") for x in xs):
        return set()
    return {str(x) for x in xs}


def _write_manifest(dest: Path, links: list[str], dirs: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"sweepc_view": MANIFEST_VERSION, "links": links, "dirs": dirs}, indent=1) + "\n")
    os.replace(tmp, dest / MANIFEST)
