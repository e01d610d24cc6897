"""The BuildGraph: what the compiler hands to every later stage.

Per-job records are NamedTuples (300k of them at 100k psets: a frozen
dataclass would cost a third of the planning budget); the containers are
frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from sweepc.errors import Diagnostic, Span
from sweepc.lang.sweeps import IndexColumn
from sweepc.values import Scalar

# Files sweepc itself writes into a job directory.
LOG_NAME = "sweepc.log"
INPUT_LIST_NAME = "sweepc-inputs.txt"
RECORD_NAME = "sweepc-record.json"
MARKER_NAME = ".sweepc-job"  # "sweepc made this folder": what `sweepc clean` may remove
# What a `python:` rule's function returned: its results file.
PYTHON_RESULT_NAME = "sweepc-result.json"
PSET_JSON_NAME = "pset.json"
# SLURM: where (in the submission folder) the runner records a pset whose job folder it refused
REFUSED_DIR = "refused"
# {job-folder path: template file} of the files sweepc rendered into the job
# folder (backends/jobdir.py), so that one whose template is gone is removed
# before the job runs again, and the planner can say so
RENDERED_LIST_NAME = ".sweepc-templates"
RESERVED_NAMES = frozenset({LOG_NAME, INPUT_LIST_NAME, RECORD_NAME, MARKER_NAME, PYTHON_RESULT_NAME, PSET_JSON_NAME, RENDERED_LIST_NAME})


class Resources(NamedTuple):
    cpus: int = 1
    mem_mb: int | None = None
    time_s: int | None = None
    nodes: int = 1
    tasks: int = 1
    gpus: int = 0
    pack: int | None = None  # SLURM: psets an array task runs at once (None: the backend block's, else 1)


class Job(NamedTuple):
    id: int
    rule: str
    hash: str
    seq: int  # instance number within its rule (psweep's _pset_seq)
    params: Mapping[str, Scalar]
    deps: tuple[int, ...]  # upstream job ids, in input order
    sources: tuple[str, ...]  # project-relative source input paths
    command: str
    restart: str | None
    resources: Resources
    # the deps that come through `input: done(RULE)`: the job runs once they have
    # ended, with those that ended done (not blocked by a failure among them)
    soft: frozenset[int] = frozenset()

    @property
    def reldir(self) -> str:
        """The job directory relative to the workdir: <rule>/<hh>/<hash>."""
        return f"{self.rule}/{self.hash[:2]}/{self.hash}"

    @property
    def label(self) -> str:
        if not self.params:
            return self.rule
        inner = ",".join([f"{k}={v}" if type(v) is int or type(v) is str else f"{k}={_short(v)}" for k, v in self.params.items()])
        return f"{self.rule}[{inner}]"


def _short(v: Scalar) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    return repr(v) if isinstance(v, float) else str(v)


@dataclass(frozen=True, slots=True)
class InputSpec:
    name: str | None  # the name for {input.NAME}; a rule input is named after its rule by default
    rule: str | None  # upstream rule, or None for a source path
    path: str | None  # source path template (project relative)
    span: Span
    only_done: bool = False  # input: done(RULE): only the upstream jobs that ended done


@dataclass(frozen=True, slots=True)
class OutputSpec:
    name: str | None
    path: str  # relative to the job directory
    span: Span
    temp: bool = False  # temp("..."): removed once every job that reads it is done


@dataclass(frozen=True, slots=True)
class TemplateFile:
    """One file a rule's templates: field puts into every job folder."""

    source: str  # project-relative path of the template file
    dest: str  # job-folder-relative path it is written to (a trailing .j2 dropped)
    text: bool  # rendered with jinja2; False: copied as it is (not UTF-8 text)
    span: Span  # the templates: item it comes from


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str
    span: Span
    over: str | None  # text of the over expression (a sweep name when it is one)
    by: tuple[str, ...]
    keys: tuple[str, ...]  # parameter names of its instances
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    results: tuple[str, ...]
    shell: str
    restart: str | None
    retries: int
    local: bool
    first_job: int
    n_jobs: int
    # `python: "FILE.py:FUNC"`: (FILE.py relative to the project, FUNC); the
    # jobs' `command` is then a stand-in that calls it (see commands.py)
    python: tuple[str, str] | None = None
    templates: tuple[TemplateFile, ...] = ()
    # what of the job beyond its pset the templates use ("seq", "resources"):
    # part of the fingerprint only then, so adding a pset does not rerun the rest
    template_uses: tuple[str, ...] = ()
    # what decides the text of every job's command besides its pset and
    # inputs, for a rule whose jobs can be taken from an earlier compile
    # (commands.py, _Renderer.render_key); "" for any other rule
    render_key: str = ""

    @property
    def job_ids(self) -> range:
        return range(self.first_job, self.first_job + self.n_jobs)

    @property
    def upstream(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.rule for i in self.inputs if i.rule is not None))


class EarlierJobs(NamedTuple):
    """The jobs of the graph the cache held before this process compiled
    another (project.earlier_jobs()), as columns by their job id then: what
    the renderer needs to take a job's hash and command from there instead
    of making them again (commands.py), and the planner to reuse its
    fingerprint (planner._hashes); and each rule's render_key then."""

    rule: tuple[str, ...]
    hash: tuple[str, ...]
    command: tuple[str, ...]
    restart: tuple[str | None, ...]
    deps: tuple[tuple[int, ...], ...]
    sources: tuple[tuple[str, ...], ...]
    params: tuple[Mapping[str, Scalar], ...]  # () once the compiler is done with it
    render_keys: Mapping[str, str]

    def spans(self, names: Iterable[str]) -> dict[str, tuple[int, int]]:
        """Where the jobs of each of these rules were (first, end): rule by
        rule there too; a rule the earlier graph had not is left out."""
        rules = self.rule
        backwards = rules[::-1]
        out: dict[str, tuple[int, int]] = {}
        for name in names:
            try:
                first = rules.index(name)
            except ValueError:
                continue
            out[name] = (first, len(rules) - backwards.index(name))
        return out


@dataclass(frozen=True, slots=True)
class Sweep:
    name: str
    psets: tuple[Mapping[str, Scalar], ...]
    hashes: tuple[str, ...]
    keys: tuple[str, ...]


@dataclass(frozen=True)
class BuildGraph:
    root: Path  # the project folder (holds the sweepfile)
    sweepfile: Path
    source: str  # sweepfile text, for rendering errors found later
    workdir: str  # as written; relative to root unless absolute
    params: Mapping[str, tuple[Scalar, ...]]
    sweeps: Mapping[str, Sweep]
    rules: tuple[RuleSpec, ...]  # in topological order
    jobs: tuple[Job, ...]  # rule by rule in that order
    backends: Mapping[str, Mapping[str, Scalar | tuple[Scalar, ...]]]
    rule_index: Mapping[str, int] = field(default_factory=dict)
    # Samples made by a rule: the rules whose output some rule's sweep reads
    # (a build runs them first, then compiles again), and the sweeps whose
    # psets are not known yet because such an output is not there.
    sample_rules: frozenset[str] = frozenset()
    pending: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # sample rules whose output is there but cannot be read as samples (an
    # empty file a failed run left, a column the sweepfile asks for and it
    # lacks): why, to report when running the rule again has not helped
    unread: Mapping[str, Diagnostic] = field(default_factory=dict)
    # csv(..., index="NAME") columns: shown as `_index`, never hashed
    indexes: tuple[IndexColumn, ...] = ()

    @property
    def workdir_path(self) -> Path:
        return self.root / self.workdir

    def index_of(self, params: Mapping[str, Scalar]) -> Scalar | None:
        """The csv index (`_index`) of the row these parameters came from, if any."""
        for idx in self.indexes:
            v = idx.of(params)
            if v is not None:
                return v
        return None

    def has_index(self, keys: tuple[str, ...]) -> bool:
        """Whether psets with these parameter names can have an `_index`."""
        return any(set(idx.columns) <= set(keys) for idx in self.indexes)

    def rule(self, name: str) -> RuleSpec:
        return self.rules[self.rule_index[name]]

    def job_dir(self, job: Job) -> Path:
        return self.workdir_path / job.reldir

    def output_paths(self, job: Job) -> tuple[Path, ...]:
        d = self.job_dir(job)
        return tuple(d / o.path for o in self.rule(job.rule).outputs)

    def ancestors(self, roots: set[int]) -> set[int]:
        """The jobs in roots and every job they need, transitively."""
        seen = set(roots)
        stack = list(roots)
        jobs = self.jobs
        while stack:
            for d in jobs[stack.pop()].deps:
                if d not in seen:
                    seen.add(d)
                    stack.append(d)
        return seen
