"""The SLURM backend without a cluster: golden job scripts, the dependency
flags and number of sbatch calls of a multi-rule plan (against a FAKE sbatch,
which is fine for rendering; tests/test_slurm_backend.py uses the real one),
and the task runner (runner.sh) run with plain bash.

Golden cases: tests/golden/slurm/NAME.sweep -> NAME.out (see the README there).
Maintainers: SWEEPC_UPDATE_GOLDEN=1 pytest tests/test_slurm_render.py rewrites
the .out files; read every changed file before committing it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sweepc.cli import main
from sweepc.lang.graph import RECORD_NAME
from sweepc.backends.slurm.render import PYJOB_NAME, PYRUNNER_NAME, RUNNER_NAME, runner_text
from sweepc.plan.store import Store

CASES = Path(__file__).parent / "golden" / "slurm"
UPDATE = os.environ.get("SWEEPC_UPDATE_GOLDEN", "") not in ("", "0")
CASE_FILES = sorted(CASES.glob("*.sweep"))


# -- a fake SLURM: sbatch records its argv and hands out ids ----------------------------


def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_array_size: int = 1001) -> Path:
    """PATH gets sbatch/squeue/scontrol/scancel scripts; returns the log of sbatch calls.
    squeue prints the file squeue.txt next to the log (nothing when it is absent)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    log = tmp_path / "sbatch.log"
    counter = tmp_path / "next-id"
    counter.write_text("100\n")
    scripts = {
        "sbatch": f'#!/bin/bash\nprintf "%s\\n" "$*" >> {log}\nn=$(cat {counter}); echo $((n + 1)) > {counter}\necho "$n;cluster"\n',
        "squeue": f"#!/bin/bash\ncat {tmp_path}/squeue.txt 2>/dev/null\nexit 0\n",
        "scontrol": f'#!/bin/bash\necho "MaxArraySize            = {max_array_size}"\n',
        "scancel": f'#!/bin/bash\nprintf "scancel %s\\n" "$*" >> {log}\n',
    }
    for name, text in scripts.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log


def make_project(tmp_path: Path, text: str, files: Path | None = None) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "sweepfile").write_text(text)
    if files is not None and files.is_dir():
        shutil.copytree(files, project, dirs_exist_ok=True)
    return project


# -- golden job scripts ---------------------------------------------------------------------


def render_case(case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    text = case.read_text()
    m = re.match(r"# max-array-size: (\d+)", text)
    fake_slurm(tmp_path, monkeypatch, int(m.group(1)) if m else 1001)
    project = make_project(tmp_path, text, case.with_suffix(".files"))
    monkeypatch.chdir(project)
    code = main(["build", "--backend", "slurm", "--render-only"])
    out, err = capsys.readouterr()
    if code != 0:
        return f"exit {code}\n{err}".replace(str(project), "<root>")
    (folder,) = (project / ".sweepc" / "slurm").iterdir()
    parts = [out]
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != RUNNER_NAME):
        if f.name in (PYRUNNER_NAME, PYJOB_NAME):  # copies of sweepc's own files: pinned as there, not here
            parts.append(f"==> {f.relative_to(folder)} <== (copied from sweepc)\n")
            continue
        parts.append(f"==> {f.relative_to(folder)} <==\n{f.read_text()}")
    text = "".join(parts).replace(str(project), "<root>").replace(folder.name, "<submission>")
    # the planner's hashes are the planner's business (and versioned): pin where they go, not what they are
    text = _PLANNER_HASHES_JSON.sub(r'"fp": "<fingerprint>", "ch": "<cmd_hash>", "ih": "<inputs_hash>"', text)
    return _PLANNER_HASHES.sub(r"\1 <fingerprint> <cmd_hash> <inputs_hash> ", text)


_PLANNER_HASHES = re.compile(r"^(sweepc_pset [0-9a-f]+) [0-9a-f]+ [0-9a-f]+ [0-9a-f]+ ", re.MULTILINE)
_PLANNER_HASHES_JSON = re.compile(r'"fp": "[0-9a-f]+", "ch": "[0-9a-f]+", "ih": "[0-9a-f]+"')


def test_there_are_cases() -> None:
    assert len(CASE_FILES) >= 10


@pytest.mark.parametrize("case", CASE_FILES, ids=[c.stem for c in CASE_FILES])
def test_golden(case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    got = render_case(case, tmp_path, monkeypatch, capsys)
    golden = case.with_suffix(".out")
    if UPDATE:
        golden.write_text(got)
    assert golden.exists(), f"no golden file {golden.name}; run with SWEEPC_UPDATE_GOLDEN=1 to write it"
    assert got == golden.read_text()


@pytest.mark.parametrize(("directive", "option"), [
    ("--array=0-3", "--array"), ("--array 0-3", "--array"), ("-a 0-3", "--array"), ("-a0-3", "--array"), ("--arr=0-3", "--array"),
    ("-o /tmp/x", "--output"), ("-o/tmp/x", "--output"), ("--outp=x", "--output"),
    ("-d afterok:1", "--dependency"), ("--dep=afterok:1", "--dependency"),
    ("--parsable", "--parsable"), ("--kill-on-invalid-dep=no", "--kill-on-invalid-dep"),
    ("--chdir=/", "--chdir"), ("-D /", "--chdir"),
])
def test_a_directive_may_not_set_sweepcs_own_options_in_any_form(
    directive: str, option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # the short and cut-short forms sbatch reads too went through: "-a 1-3" ran the wrong
    # task indices, "-D /" a task that cannot find its runner, "-o" moved SLURM's log away
    fake_slurm(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweepfile").write_text(
        f'param a = [1]\nrule sim over a:\n    output: "out.txt"\n    shell: "echo {{a}} > {{output}}"\n'
        f'backend slurm:\n    directives = ["--exclusive", "{directive}"]\n'
    )
    capsys.readouterr()
    assert main(["build", "--backend", "slurm"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"sweepc: sweepfile: backend slurm: directive '{directive}' sets {option}, which sweepc sets itself\n"
                               "  hint: remove it from directives\n")
    assert not (tmp_path / "sbatch.log").exists()


def test_directives_that_only_look_like_sweepcs_own_are_kept() -> None:
    from sweepc.backends.slurm.settings import own_option

    for d in ("--account=x", "-A x", "--open-mode=append", "--deadline=now", "--constraint=a", "-C a", "-N 2", "--exclusive"):
        assert own_option(d) is None, d


def test_render_only_submits_nothing_and_records_the_jobs_as_rendered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    render_case(CASES / "throttle_bundle.sweep", tmp_path, monkeypatch, capsys)
    assert not (tmp_path / "sbatch.log").exists()
    store = Store.open(tmp_path / "project", create=False)
    recs = store.records()
    store.close()
    # queued under placeholders "rendered:ARRAY:TASK": submit.sh's records count once they are here
    assert {r.status for r in recs.values()} == {"queued"}
    assert sorted({r.backend_job_id for r in recs.values()})[:2] == ["rendered:01-gen:0", "rendered:01-gen:1"]
    assert len({r.run_id for r in recs.values()}) == 1


def test_submit_sh_submits_in_order_with_dependencies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    render_case(CASES / "gather_afterok.sweep", tmp_path, monkeypatch, capsys)
    (submit,) = (tmp_path / "project" / ".sweepc" / "slurm").glob("*/submit.sh")
    done = subprocess.run(["bash", str(submit)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "sbatch.log").read_text().splitlines()
    assert calls == [
        "--parsable 01-gen.sh",
        "--parsable --dependency=afterok:100 --kill-on-invalid-dep=yes 02-mean.sh",
        "--parsable --dependency=afterok:101 --kill-on-invalid-dep=yes 03-total.sh",
    ]
    assert done.stdout.splitlines()[0] == "gen: job 100, 6 psets in 3 tasks (01-gen.sh)"


# -- submitting a multi-rule plan (fake sbatch) --------------------------------------------

PIPELINE = """\
param a = [1, 2, 3]
param b = [10, 20]
sweep grid = a * b

rule gen over grid:
    output: "out.txt"
    shell: "echo {a} {b} > {output}"

rule square over grid:
    input: gen
    output: "sq.txt"
    shell: "cat {input} > {output}"

rule mean over grid by a:
    input: square
    output: "mean.txt"
    shell: "cat {input} > {output}"

rule total:
    input: mean
    output: "total.txt"
    shell: "cat {input} > {output}"

backend slurm:
    bundle = 2
"""


def test_one_sbatch_per_rule_with_aftercorr_and_afterok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_slurm(tmp_path, monkeypatch)
    project = make_project(tmp_path, PIPELINE)
    monkeypatch.chdir(project)
    assert main(["build", "--backend", "slurm"]) == 0
    out = capsys.readouterr().out
    calls = [c.split() for c in log.read_text().splitlines()]
    assert [c[-1].rsplit("/", 1)[-1] for c in calls] == ["01-gen.sh", "02-square.sh", "03-mean.sh", "04-total.sh"]
    assert [c[1:-1] for c in calls] == [
        [],
        ["--dependency=aftercorr:100", "--kill-on-invalid-dep=yes"],  # task i of square needs exactly task i of gen
        ["--dependency=afterok:101", "--kill-on-invalid-dep=yes"],  # a gather: the whole array
        ["--dependency=afterok:102", "--kill-on-invalid-dep=yes"],
    ]
    assert "submitted gen: job 100, 6 psets in 3 tasks\n" in out
    assert "submitted square: job 101, 6 psets in 3 tasks after aftercorr:100\n" in out
    assert "sweepc: submitted 16 jobs in 4 arrays" in out
    store = Store.open(project)
    recs = store.records()
    store.close()
    assert {r.status for r in recs.values()} == {"queued"}
    assert sorted(r.backend_job_id for r in recs.values() if r.rule == "square") == ["101_0", "101_0", "101_1", "101_1", "101_2", "101_2"]
    assert len({r.run_id for r in recs.values()}) == 1


def test_aftercorr_only_when_tasks_line_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # square runs over every other pset of gen's sweep: with 2 psets per task, its
    # task 0 (psets 0 and 2 of gen's sweep) needs gen's tasks 0 and 1
    log = fake_slurm(tmp_path, monkeypatch)
    text = PIPELINE.replace("rule square over grid:", "sweep small = grid where b == 10\n\nrule square over small:")
    project = make_project(tmp_path, text)
    monkeypatch.chdir(project)
    assert main(["build", "--backend", "slurm"]) == 0
    calls = [c.split() for c in log.read_text().splitlines()]
    assert calls[1][-1].endswith("02-square.sh")
    assert calls[1][1:-1] == ["--dependency=afterok:100", "--kill-on-invalid-dep=yes"]
    # the same psets, but only those: the tasks line up
    shutil.rmtree(project / ".sweepc")
    log.unlink()
    assert main(["build", "--backend", "slurm", "square"]) == 0
    calls = [c.split() for c in log.read_text().splitlines()]
    assert calls[1][1:-1] == ["--dependency=aftercorr:104", "--kill-on-invalid-dep=yes"]


def test_split_at_max_array_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_slurm(tmp_path, monkeypatch, max_array_size=2)
    project = make_project(tmp_path, PIPELINE.replace("bundle = 2", "bundle = 1"))
    monkeypatch.chdir(project)
    assert main(["build", "--backend", "slurm", "square"]) == 0
    calls = [c.split() for c in log.read_text().splitlines()]
    # 6 psets, 1 per task, indexes 0..1: three arrays per rule, each square array after its gen array
    assert len(calls) == 6
    scripts = [c[-1].rsplit("/", 1)[-1] for c in calls]
    assert scripts == ["01-gen.sh", "02-gen.sh", "03-gen.sh", "04-square.sh", "05-square.sh", "06-square.sh"]
    assert [c[1] for c in calls[3:]] == ["--dependency=aftercorr:100", "--dependency=aftercorr:101", "--dependency=aftercorr:102"]
    for c in calls:
        assert "#SBATCH --array=0-1\n" in Path(c[-1]).read_text() or "#SBATCH --array=0-1\n" not in Path(c[-1]).read_text()
    assert sum("#SBATCH --array=0-1\n" in Path(c[-1]).read_text() for c in calls) == 6


def test_second_build_does_not_resubmit_what_squeue_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_slurm(tmp_path, monkeypatch)
    project = make_project(tmp_path, PIPELINE)
    monkeypatch.chdir(project)
    assert main(["build", "--backend", "slurm", "gen"]) == 0
    (tmp_path / "squeue.txt").write_text("100_0 RUNNING\n100_1 PENDING\n100_2 PENDING\n")
    capsys.readouterr()
    assert main(["build", "--backend", "slurm", "gen"]) == 0
    assert "nothing to do (0 jobs up to date, 6 still queued in SLURM as job 100)" in capsys.readouterr().out
    assert main(["build", "--backend", "slurm", "-n"]) == 0
    out = capsys.readouterr().out
    assert "skip gen[a=1,b=10]: queued as job 100_0\n" in out
    assert main(["build", "--backend", "slurm", "square"]) == 0
    calls = log.read_text().splitlines()
    assert len(calls) == 2
    # square waits for the exact tasks of the earlier build's array
    assert "--dependency=afterok:100_0:100_1:100_2" in calls[1]


def test_template_syntax_error_is_located(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake_slurm(tmp_path, monkeypatch)
    project = make_project(tmp_path, (CASES / "defaults.sweep").read_text())
    (project / "sweepc-slurm.sh.j2").write_text("#!/bin/bash\n{% if x %}\n#SBATCH --array={{ array }}\n")
    monkeypatch.chdir(project)
    assert main(["build", "--backend", "slurm", "--render-only"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sweepc: sweepc-slurm.sh.j2:3: Unexpected end of template.")


# -- the task runner, run with plain bash --------------------------------------------------


def run_task(tmp_path: Path, body: str, outputs: str = "out.txt", limit: str = "", env: dict[str, str] | None = None,
             wait: bool = True) -> subprocess.Popen[str]:
    runner = tmp_path / RUNNER_NAME
    runner.write_text(runner_text())
    task = tmp_path / "task-0.sh"
    task.write_text(
        f"SWEEPC_SUBMISSION=sub1\nSWEEPC_RULE=r\nSWEEPC_ROOT={tmp_path}\nSWEEPC_WORKDIR={tmp_path}/calc\n"
        f"SWEEPC_OUTPUTS=({outputs})\nSWEEPC_TIME_LIMIT={limit}\n" + body
    )
    full_env = {**os.environ, "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "0", "SLURM_JOB_ID": "8", **(env or {})}
    p = subprocess.Popen(["bash", str(runner), str(task)], env=full_env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if wait:
        p.wait(timeout=30)
    return p


def job(tmp_path: Path, h: str, rule: str = "r") -> Path:
    d = tmp_path / "calc" / rule / h[:2] / h
    d.mkdir(parents=True, exist_ok=True)
    return d


def record(tmp_path: Path, h: str, rule: str = "r") -> dict[str, object]:
    data: dict[str, object] = json.loads((job(tmp_path, h, rule) / RECORD_NAME).read_text())
    return data


def pset(h: str, command: str, *upstream: str, attempt: int = 1) -> str:
    return f"sweepc_pset {h} fp-{h} ch-{h} ih-{h} {attempt} {' '.join(upstream)} <<'END_{h}'\n{command}\nEND_{h}\n"


def test_runner_runs_every_pset_and_records_each(tmp_path: Path) -> None:
    for h in ("aa01", "bb02", "cc03"):
        job(tmp_path, h)
    p = run_task(tmp_path, pset("aa01", "echo one > out.txt") + pset("bb02", "echo two; exit 3") + pset("cc03", "echo three > out.txt; echo $SWEEPC_ATTEMPT $SWEEPC_PSET_HASH"))
    assert p.returncode == 0
    a, b, c = record(tmp_path, "aa01"), record(tmp_path, "bb02"), record(tmp_path, "cc03")
    assert (a["status"], a["exit_code"]) == ("done", 0)
    assert (b["status"], b["exit_code"]) == ("failed", 3)  # and its sibling after it still ran:
    assert (c["status"], c["exit_code"]) == ("done", 0)
    assert a["submission"] == "sub1" and a["array_job_id"] == "7" and a["array_task_id"] == "0" and a["job_id"] == "8"
    assert (a["fingerprint"], a["cmd_hash"], a["inputs_hash"], a["attempt"]) == ("fp-aa01", "ch-aa01", "ih-aa01", 1)
    assert isinstance(a["start"], float) and isinstance(a["end"], float) and a["end"] >= a["start"]
    assert (job(tmp_path, "bb02") / "sweepc.log").read_text() == "two\n"
    assert (job(tmp_path, "cc03") / "sweepc.log").read_text() == "1 cc03\n"
    assert not list(tmp_path.rglob("*.tmp"))


def test_runner_uses_bash_e_pipefail(tmp_path: Path) -> None:
    job(tmp_path, "aa01")
    job(tmp_path, "bb02")
    run_task(tmp_path, pset("aa01", "false | true\necho not reached > out.txt") + pset("bb02", "false\necho not reached > out.txt"))
    assert record(tmp_path, "aa01")["exit_code"] == 1
    assert record(tmp_path, "bb02")["exit_code"] == 1


def test_runner_exit_0_without_outputs_is_a_failure(tmp_path: Path) -> None:
    job(tmp_path, "aa01")
    run_task(tmp_path, pset("aa01", "echo hi > other.txt"), outputs="out.txt 'b c.txt'")
    rec = record(tmp_path, "aa01")
    assert (rec["status"], rec["exit_code"], rec["note"]) == ("failed", 0, "exited 0 but did not write out.txt b c.txt")


def test_runner_keeps_quoted_commands_byte_for_byte(tmp_path: Path) -> None:
    job(tmp_path, "aa01")
    command = "printf '%s\\n' 'it'\"'\"'s \"q\" $HOME `date`  two' > out.txt\necho 'END_aa0' >> out.txt"
    run_task(tmp_path, pset("aa01", command))
    assert (job(tmp_path, "aa01") / "out.txt").read_text() == "it's \"q\" $HOME `date`  two\nEND_aa0\n"


def test_runner_skips_a_pset_whose_upstream_is_not_done(tmp_path: Path) -> None:
    up_ok, up_failed, up_other = job(tmp_path, "1100", "u"), job(tmp_path, "2200", "u"), job(tmp_path, "3300", "u")
    (up_ok / RECORD_NAME).write_text('{"version": 1, "submission": "sub1", "rule": "u", "hash": "1100", "status": "done"}\n')
    (up_failed / RECORD_NAME).write_text('{"version": 1, "submission": "sub1", "rule": "u", "hash": "2200", "status": "failed"}\n')
    (up_other / RECORD_NAME).write_text('{"version": 1, "submission": "old", "rule": "u", "hash": "3300", "status": "done"}\n')
    for h in ("aa01", "bb02", "cc03", "dd04", "ee05"):
        job(tmp_path, h)
    run_task(
        tmp_path,
        pset("aa01", "touch out.txt", "u/11/1100")
        + pset("bb02", "touch out.txt", "u/11/1100", "u/22/2200")
        + pset("cc03", "touch out.txt", "u/33/3300")  # a record of another submission does not count
        + pset("dd04", "touch out.txt", "u/33/3300@old")  # unless it is the submission named
        + pset("ee05", "touch out.txt", "u/44/4400"),  # no record at all
    )
    assert [record(tmp_path, h)["status"] for h in ("aa01", "bb02", "cc03", "dd04", "ee05")] == ["done", "skipped", "skipped", "done", "skipped"]
    assert record(tmp_path, "bb02")["note"] == "input u/22/2200 is not done"
    assert not (job(tmp_path, "bb02") / "out.txt").exists()


@pytest.mark.parametrize(("limit", "status"), [("1", "timeout"), ("3600", "cancelled")])
def test_runner_on_sigterm_records_the_running_pset_and_not_the_rest(tmp_path: Path, limit: str, status: str) -> None:
    for h in ("aa01", "bb02", "cc03"):
        job(tmp_path, h)
    p = run_task(tmp_path, pset("aa01", "touch out.txt") + pset("bb02", "touch started; sleep 30; touch out.txt") + pset("cc03", "touch out.txt"),
                 limit=limit, wait=False)
    deadline = time.monotonic() + 10
    while not (job(tmp_path, "bb02") / "started").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)  # SLURM signals the batch shell (and the rest of the job)
    p.wait(timeout=10)
    assert p.returncode == 0
    assert [record(tmp_path, h)["status"] for h in ("aa01", "bb02", "cc03")] == ["done", status, "not-run"]
    assert record(tmp_path, "bb02")["exit_code"] is None
    assert not (job(tmp_path, "cc03") / "out.txt").exists()


def test_runner_makes_a_missing_job_folder_with_the_marker(tmp_path: Path) -> None:
    p = run_task(tmp_path, pset("aa01", "echo 1 > out.txt"))  # no job folder: the runner makes it
    assert p.returncode == 0
    assert record(tmp_path, "aa01")["status"] == "done"
    assert (job(tmp_path, "aa01") / ".sweepc-job").read_text() == "r/aa/aa01\n"


def test_runner_refuses_a_file_in_place_of_the_job_folder_with_a_record_in_the_submission_folder(tmp_path: Path) -> None:
    (tmp_path / "calc" / "r" / "aa").mkdir(parents=True)
    (tmp_path / "calc" / "r" / "aa" / "aa01").write_text("a file where the job folder should be")
    p = run_task(tmp_path, pset("aa01", "touch out.txt") + pset("bb02", "touch out.txt"))
    assert p.returncode == 0
    rec = json.loads((tmp_path / "refused" / "r" / "aa01" / RECORD_NAME).read_text())
    assert (rec["status"], rec["exit_code"], rec["note"]) == (
        "failed", None, f"refusing to run it: {tmp_path}/calc/r/aa/aa01 is in the way: it is not a folder; move it away")
    assert (tmp_path / "calc" / "r" / "aa" / "aa01").read_text() == "a file where the job folder should be"
    assert record(tmp_path, "bb02")["status"] == "done"  # its sibling still ran


def test_runner_exits_1_when_a_record_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "calc" / "r" / "aa").mkdir(parents=True)
    (tmp_path / "calc" / "r" / "aa" / "aa01").write_text("a file where the job folder should be")
    (tmp_path / "refused").write_text("and a file where the refused records go")
    p = run_task(tmp_path, pset("aa01", "true"))
    assert p.returncode == 1
    assert "cannot write" in (p.stderr.read() if p.stderr else "")


@pytest.mark.parametrize("where", ["job", "shard", "rule"])
def test_runner_never_writes_through_a_symbolic_link_in_place_of_a_job_folder(tmp_path: Path, where: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "out.txt").write_text("not sweepc's")
    link = {"job": tmp_path / "calc" / "r" / "aa" / "aa01", "shard": tmp_path / "calc" / "r" / "aa", "rule": tmp_path / "calc" / "r"}[where]
    link.parent.mkdir(parents=True, exist_ok=True)
    if where == "job":
        link.symlink_to(outside)
    else:  # the link leads to a tree that looks like the rest of the path
        (outside / "aa" / "aa01").mkdir(parents=True) if where == "rule" else (outside / "aa01").mkdir()
        link.symlink_to(outside)
    before = sorted((str(q), q.read_bytes() if q.is_file() else b"") for q in outside.rglob("*"))
    p = run_task(tmp_path, "SWEEPC_MAKE_DIRS=1\n_sweepc_pj='{}'\n" + pset("aa01", "echo hi > out.txt"))
    assert p.returncode == 0
    rec = json.loads((tmp_path / "refused" / "r" / "aa01" / RECORD_NAME).read_text())
    assert rec["status"] == "failed" and rec["exit_code"] is None
    assert rec["note"] == (f"refusing to run it: {link} is a symbolic link (to {outside}); sweepc writes job files only "
                           "into real folders inside the workdir: remove the link")
    assert sorted((str(q), q.read_bytes() if q.is_file() else b"") for q in outside.rglob("*")) == before  # nothing touched there


def test_runner_prepares_a_folder_left_to_it_as_sweepc_would(tmp_path: Path) -> None:
    """SWEEPC_MAKE_DIRS=1: marker and pset.json byte for byte, stale outputs removed
    (never through a link), a pset.json link replaced, not written through."""
    text = '{\n  "params": {\n    "s": "it\'s \\"q\\" é $HOME `x`"\n  }\n}\n'
    import shlex
    d = job(tmp_path, "bb02")
    (d / "out.txt").write_text("stale")
    (d / "sub").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.txt").write_text("keep")
    (outside / "pset.json").write_text("keep")
    (d / "deep").symlink_to(outside)
    (d / "pset.json").symlink_to(outside / "pset.json")
    body = ("SWEEPC_MAKE_DIRS=1\n"
            f"_sweepc_pj={shlex.quote(text)}\n" + pset("aa01", "cp pset.json copy.json; echo 1 > out.txt; mkdir deep; echo 2 > deep/x.txt")
            + f"_sweepc_pj={shlex.quote(text)}\n" + pset("bb02", "exit 3"))
    p = run_task(tmp_path, body, outputs="out.txt deep/x.txt")
    assert p.returncode == 0
    a = job(tmp_path, "aa01")
    assert (a / "pset.json").read_bytes() == text.encode() == (a / "copy.json").read_bytes()
    assert (a / ".sweepc-job").read_text() == "r/aa/aa01\n"
    assert record(tmp_path, "aa01")["status"] == "done"
    # bb02 existed: its stale output is gone though the run failed; the link lost, its target kept
    assert record(tmp_path, "bb02")["status"] == "failed"
    assert not (d / "out.txt").exists() and not os.path.lexists(d / "deep")
    assert (outside / "x.txt").read_text() == "keep" and (outside / "pset.json").read_text() == "keep"
    assert not (d / "pset.json").is_symlink() and (d / "pset.json").read_bytes() == text.encode()
    assert (d / ".sweepc-job").read_text() == "r/bb/bb02\n"
    assert not list(tmp_path.rglob("*.sweepc-tmp"))




def test_status_json_names_a_running_conductor_on_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A conductor is found through the build lock it holds (conductor.running):
    a lock naming this very process, with the conductor's flag, stands in for one."""
    import socket

    (tmp_path / "sweepfile").write_text('param a = [1, 2]\nrule r over a:\n    output: "o"\n    shell: "touch o"\nrule s:\n    input: r\n    output: "t"\n    shell: "touch t"\n')
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".sweepc").mkdir()
    started = 1796000000.25
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    (tmp_path / ".sweepc" / "build.lock").write_text(json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "argv": ["build", "--backend", "slurm", "--wait", "--conductor"]}))
    assert main(["status", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["rule"] for r in rows] == ["r", "s"]
    for r in rows:
        assert r["conductor"] == {"pid": os.getpid(), "host": socket.gethostname(), "since": since, "started": started,
                                  "log": ".sweepc/conductor.log"}
    assert main(["status"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"sweepc: a conductor is running since {since} (pid {os.getpid()}); log: .sweepc/conductor.log"
    (tmp_path / ".sweepc" / "build.lock").write_text("")  # none running: no field
    assert main(["status", "--format", "json"]) == 0
    assert all("conductor" not in r for r in json.loads(capsys.readouterr().out))


@pytest.mark.parametrize("said", ["sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying", ""])
def test_a_scheduler_command_that_hangs_is_stopped_and_what_it_said_is_the_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: str) -> None:
    """sbatch retries for as long as the controller refuses new jobs (its
    MaxJobCount reached: found by scripts/chaos.py on SLURM), saying so on
    stderr; sweepc stops waiting and says what sbatch said, not only that
    it did not answer (which still asks whether slurmctld runs when it
    said nothing)."""
    from sweepc.backends.slurm import scheduler as sch

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(f"#!/bin/bash\n{'echo ' + repr(said) + ' >&2' if said else ''}\nexec sleep 30\n")
    (bindir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setattr(sch, "TIMEOUT_S", 1.0)
    t0 = time.monotonic()
    with pytest.raises(sch.SchedulerError) as e:
        sch.SubprocessScheduler().submit(tmp_path / "job.sh", [], tmp_path)
    assert time.monotonic() - t0 < 10
    assert str(e.value) == ("sbatch did not answer within 1 s; it said: " + said if said else
                            "sbatch did not answer within 1 s; is slurmctld running?")


def test_a_build_that_an_error_stops_is_a_failed_run_not_an_interrupted_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """sbatch refuses the submission: the build says why (exit 2), and the
    runs table says `failed`. It said `interrupted`, which is Ctrl-C's."""
    fake_slurm(tmp_path, monkeypatch)
    (tmp_path / "fakebin" / "sbatch").write_text("#!/bin/bash\necho 'sbatch: error: QOSMaxSubmitJobPerUserLimit' >&2\nexit 1\n")
    project = make_project(tmp_path, PIPELINE)
    monkeypatch.chdir(project)
    capsys.readouterr()
    assert main(["build", "--backend", "slurm"]) == 2
    assert capsys.readouterr().err == "sweepc: sbatch 01-gen.sh failed: sbatch: error: QOSMaxSubmitJobPerUserLimit\n"
    assert main(["runs", "--format", "json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert run["status"] == "failed"
