"""The `backend slurm:` block of a sweepfile, checked once.

The compiler keeps backend blocks as plain values (graph.backends["slurm"]);
what they mean is the SLURM backend's business, so it is checked here and
every mistake is reported before anything is written or submitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sweepc.errors import UsageError, did_you_mean, listing
from sweepc.lang.graph import BuildGraph
from sweepc.values import Scalar

# The name of the project-wide template override, next to the sweepfile.
PROJECT_TEMPLATE = "sweepc-slurm.sh.j2"

# Options sweepc sets itself: a `directives` entry may not set them again
# (--chdir: a task runs in the submission folder, where its runner is).
_OWN_OPTIONS = ("--array", "--dependency", "--parsable", "--output", "--kill-on-invalid-dep", "--chdir")
# their one-letter forms, as sbatch reads them
_SHORT = {"-a": "--array", "-d": "--dependency", "-o": "--output", "-D": "--chdir"}


def own_option(directive: str) -> str | None:
    """The option of sweepc's own that an sbatch directive sets, in whatever
    form sbatch reads it: "--array=1-3", "--array 1-3", "-a 1-3", "-a1-3", or
    a long name cut short ("--arr=1-3": getopt takes any prefix that names
    one option only); else None."""
    d = directive.strip()
    if d.startswith("--"):
        name = d.split("=", 1)[0].split()[0]
        if len(name) >= 5:  # ("--ar" could be --array or --account: sbatch refuses it itself)
            for own in _OWN_OPTIONS:
                if own.startswith(name):
                    return own
        return None
    return _SHORT.get(d[:2])


@dataclass(frozen=True, slots=True)
class SlurmSettings:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    directives: tuple[str, ...] = ()  # extra #SBATCH lines, e.g. "--constraint=x"
    bundle: int | None = None  # psets per array task; None: the default (see arrays.default_bundle)
    throttle: int | None = None  # at most this many tasks of an array running (%N)
    pack: int | None = None  # psets an array task runs at once (a rule's `pack` resource wins)
    template: Path | None = None  # the jobscript template; None: the built-in one


def settings(g: BuildGraph) -> SlurmSettings:
    block = g.backends.get("slurm", {})
    where = f"{g.sweepfile.name}: backend slurm"
    known = ("partition", "account", "qos", "directives", "bundle", "throttle", "pack", "template")
    for key in block:
        if key not in known:
            raise UsageError(f"{where}: unknown setting '{key}'", did_you_mean(key, known) or f"settings: {listing(known)}")

    def text(key: str) -> str | None:
        v = block.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip() or any(c.isspace() for c in v.strip()):
            raise UsageError(f"{where}: {key} must be a name without spaces, not {v!r}", f'for example: {key} = "debug"')
        return v.strip()

    def count(key: str) -> int | None:
        v = block.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(f"{where}: {key} must be a whole number of at least 1, not {v!r}", f"for example: {key} = 10")
        return v

    raw = block.get("directives", ())
    items: tuple[Scalar, ...] = raw if isinstance(raw, tuple) else (raw,)
    directives = []
    for d in items:
        if not isinstance(d, str) or not d.strip().startswith("-") or "\n" in d:
            raise UsageError(
                f"{where}: each directive is an sbatch option such as \"--constraint=haswell\", not {d!r}",
                'for example: directives = ["--constraint=haswell", "--exclusive"]',
            )
        d = d.strip()
        option = own_option(d)
        if option is not None:
            raise UsageError(f"{where}: directive {d!r} sets {option}, which sweepc sets itself", "remove it from directives")
        directives.append(d)

    template: Path | None = None
    tpl = block.get("template")
    if tpl is not None:
        if not isinstance(tpl, str) or not tpl.strip():
            raise UsageError(f"{where}: template must be a path, not {tpl!r}", 'for example: template = "slurm.sh.j2"')
        template = g.root / tpl.strip()
        if not template.is_file():
            raise UsageError(f"{where}: template {tpl.strip()} does not exist", "paths are relative to the project folder")
    elif (g.root / PROJECT_TEMPLATE).is_file():
        template = g.root / PROJECT_TEMPLATE
    return SlurmSettings(
        partition=text("partition"), account=text("account"), qos=text("qos"), directives=tuple(directives),
        bundle=count("bundle"), throttle=count("throttle"), pack=count("pack"), template=template,
    )
