"""Re-try issue 15's bad inputs by hand: each case runs the real CLI, as a careless user would.

    python benchmarks/hostile_cases.py                 # every case, ~8 min on 2 cores (472 s measured)
    python benchmarks/hostile_cases.py --only 7,13     # the cases of some items of issue 15
    python benchmarks/hostile_cases.py --keep /tmp/hc  # keep the runs (default: a temp dir)

Each case is a command line (`rlexp-train`, `rlexp-eval`, `rlexp-study`, `rlexp-analyze`) on
tiny sizes, with what must happen: a *one-line error* naming the problem (exit code != 0, no
traceback, the named key/file in the line, nothing written where it says so), or the *correct
behaviour* (checked from the files the run wrote). It prints a markdown table (item, case, what
happened, verdict) and exits 1 when any case fails its check. The full-disk case mounts a small
tmpfs and needs root; elsewhere it is reported as skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.conftest's sizes; tests.wandb_offline reads W&B's files

from tests.conftest import TINY as TEST_SIZES  # noqa: E402

BIN = Path(sys.executable).parent
TINY = [*TEST_SIZES, "threads=1"]  # the test suite's sizes; the cases run one at a time


NOISE = re.compile(r"^wandb:|(it/s|s/it)[,\]]|HYDRA_FULL_ERROR|^Command exited with")


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Result:
    rc: int
    out: str
    wall_s: float

    @property
    def last_line(self) -> str:
        """The error's line: the last one that is not W&B's, tqdm's, Hydra's or time's chatter."""
        lines = [ANSI.sub("", ln).rsplit("\r", 1)[-1] for ln in self.out.splitlines()]
        lines = [ln for ln in lines if ln.strip() and not NOISE.search(ln)]
        return lines[-1] if lines else ""


@dataclass
class Case:
    item: int
    name: str
    check: Callable[[Path], tuple[bool, str]]


def cli(tool: str, *args: str, timeout: float = 300) -> Result:
    """Run ``tool args`` (an rlexp console script) to completion; stdout and stderr together."""
    start = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / tool), *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=WORK
    )
    return Result(proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start)


def train(out: Path, *args: str, cache: Path | None = None, timeout: float = 300) -> Result:
    return cli(
        "rlexp-train",
        *TINY,
        *args,
        f"output_dir={out}",
        f"cache_dir={cache or CACHE}",
        timeout=timeout,
    )


def start_train(out: Path, *args: str) -> subprocess.Popen:
    """``rlexp-train`` on the TINY sizes in the background (its output: stdout and stderr)."""
    cmd = [str(BIN / "rlexp-train"), *TINY, *args, f"output_dir={out}", f"cache_dir={CACHE}"]
    return subprocess.Popen(
        cmd, env=ENV, cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.3)


def one_line_error(res: Result, *needles: str) -> tuple[bool, str]:
    """A refused input: exit code != 0, no traceback, the last line names every needle."""
    line = res.last_line
    ok = res.rc != 0 and "Traceback" not in res.out and all(n in line for n in needles)
    return ok, f"exit {res.rc} after {res.wall_s:.0f} s: `{clip(line)}`"


def clip(text: str, width: int = 230) -> str:
    text = text.replace("|", "\\|").replace("`", "'")
    return text if len(text) <= width else text[: width - 1] + "…"


def digest(run_dir: Path) -> dict[str, str]:
    """sha256 of every file directly in ``run_dir`` and its ``.hydra/`` (what a resume rewrites)."""
    files = [p for p in [*run_dir.glob("*"), *run_dir.glob(".hydra/*")] if p.is_file()]
    files = [p for p in files if p.name != ".rlexp.lock"]  # the lock a refused run takes
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def steps_logged(run_dir: Path) -> list[int]:
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln]
    return [r["train/step"] for r in rows if "train/step" in r]


def status(run_dir: Path) -> str:
    return json.loads((run_dir / "run_info.json").read_text())["status"]


def copy_base(work: Path, name: str) -> Path:
    dest = work / name
    shutil.copytree(BASE, dest, ignore=shutil.ignore_patterns(".rlexp.lock", "wandb"))
    return dest


def newest_ckpt(run_dir: Path) -> Path:
    return sorted((run_dir / "checkpoints").glob("step_*"))[-1]


def both(*checks: tuple[bool, str]) -> tuple[bool, str]:
    return all(ok for ok, _ in checks), "; ".join(text for _, text in checks)


# --- item 1: evaluations and studies that resume must be the same job ------------------------
def eval_into_another_evals_dir(work: Path) -> tuple[bool, str]:
    out = work / "eval"
    first = cli("rlexp-eval", f"run_dir={BASE}", f"output_dir={out}", "n_samples=2")
    if first.rc != 0:
        return False, f"the first evaluation failed: {clip(first.last_line)}"
    before = digest(out)
    res = cli(
        "rlexp-eval", f"run_dir={BASE}", f"output_dir={out}", "n_samples=4", "temperature=0.5"
    )
    ok, text = one_line_error(res, "n_samples (2 -> 4)", "temperature (1.0 -> 0.5)")
    return ok and digest(out) == before, f"{text}; summary.json unchanged: {digest(out) == before}"


def eval_of_another_checkpoint(work: Path) -> tuple[bool, str]:
    out = work / "eval_ckpt"
    cli("rlexp-eval", f"run_dir={BASE}", f"output_dir={out}", "n_samples=2")
    other = BASE / "checkpoints" / "step_000002" / "policy"
    res = cli(
        "rlexp-eval", f"run_dir={BASE}", f"checkpoint={other}", f"output_dir={out}", "n_samples=2"
    )
    return one_line_error(res, "holds parts of another evaluation", "checkpoint (")


def study_rerun_with_other_settings(work: Path) -> tuple[bool, str]:
    out = work / "study"
    study = [
        *TINY,
        "steps=2",
        "eval_every=2",
        "study.seeds=[0]",
        "study.n_samples=4",
        "study.n_problems=8",
        "study.ks=[1,2,4]",
        f"cache_dir={CACHE}",
        f"output_dir={out}",
    ]
    first = cli("rlexp-study", *study, timeout=600)
    if first.rc != 0:
        return False, f"the first study failed: {clip(first.last_line)}"
    res = cli("rlexp-study", *study, "study.temperature=0.5")
    return one_line_error(res, "study.temperature")


# --- item 2, 3: resume restores the saved run and refuses what it cannot honour ---------------
def resume_with_changed(key_value: str, key: str) -> Callable[[Path], tuple[bool, str]]:
    def case(work: Path) -> tuple[bool, str]:
        run = copy_base(work, f"resume_{key}")
        before = digest(run)
        res = cli(
            "rlexp-train", "resume=true", f"output_dir={run}", key_value, f"cache_dir={CACHE}"
        )
        ok, text = one_line_error(res, key)
        same = digest(run) == before
        return ok and same, f"{text}; config.yaml, run_info.json untouched: {same}"

    return case


def resume_without_overrides(work: Path) -> tuple[bool, str]:
    run = copy_base(work, "resume_plain")
    bases = sorted(p.name for p in CACHE.iterdir())
    res = cli("rlexp-train", "resume=true", f"output_dir={run}", "steps=6", "threads=1")
    steps = steps_logged(run)
    retrained = sorted(p.name for p in CACHE.iterdir()) != bases
    ok = res.rc == 0 and steps == list(range(7)) and status(run) == "finished" and not retrained
    return ok, (
        f"exit {res.rc}; train/step rows {steps[0]}..{steps[-1]}, each once: {steps == sorted(set(steps))}; "
        f"status {status(run)}; no new SFT base in cache_dir: {not retrained}"
    )


def resume_steps_below_checkpoint(work: Path) -> tuple[bool, str]:
    run = copy_base(work, "resume_steps")
    res = cli("rlexp-train", "resume=true", f"output_dir={run}", "steps=1")
    return one_line_error(res, "steps=1", "4")


# --- item 5: one run per directory -------------------------------------------------------------
def concurrent_runs(work: Path) -> tuple[bool, str]:
    out = work / "shared_dir"
    args = ["steps=200", "save_every=100", "eval_every=200"]
    first = start_train(out, *args)
    wait_for(out / "metrics.jsonl", 120)
    second = train(out, *args)
    first_out, _ = first.communicate(timeout=300)
    ok2, text = one_line_error(second, "is in use by another run")
    steps = steps_logged(out)
    once = steps == list(range(201))
    return ok2 and first.returncode == 0 and once, (
        f"second: {text}; first: exit {first.returncode}, steps 0..200 each once: {once}"
    )


def new_run_into_a_finished_run(work: Path) -> tuple[bool, str]:
    run = copy_base(work, "finished")
    before = digest(run)
    res = cli("rlexp-train", *TINY, "steps=4", f"output_dir={run}", f"cache_dir={CACHE}")
    ok, text = one_line_error(res, "already holds a run", "resume=true")
    same = digest(run) == before
    return ok and same, f"{text}; the finished run's files untouched: {same}"


# --- item 6: the guard on exploded-but-finite weights --------------------------------------------
def exploded_weights(work: Path) -> tuple[bool, str]:
    out = work / "explode"
    res = train(
        out,
        "algorithm=ppo",
        "steps=8",
        "save_every=1",
        "eval_every=8",
        "algorithm.lr=1",
        "algorithm.max_grad_norm=1e9",
    )
    line = res.last_line
    if res.rc == 0:
        return False, f"exit 0: the update at lr 1 did not explode (last: {clip(line)})"
    named = Path(line.rsplit(" ", 1)[-1]) if "checkpoint is" in line else None
    good = named is not None and named.is_dir()
    norm_ok = False
    if good:
        from safetensors.torch import load_file  # noqa: PLC0415 (only this case needs torch)

        weights = load_file(str(named / "policy" / "model.safetensors"))
        norm = float(sum(w.double().square().sum() for w in weights.values()) ** 0.5)
        logged = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
        norm_ok = abs(norm - logged[-1]["train/param_norm"]) <= 1e-5 * norm
    ok = "parameter norm" in line and good and norm_ok and status(out) == "failed"
    return (
        ok,
        f"exit {res.rc}: `{clip(line)}`; the named checkpoint's weight norm = the last logged train/param_norm: {norm_ok}",
    )


# --- item 7: values that meant something else ------------------------------------------------------
def gsm8k_scientific_answer(work: Path) -> tuple[bool, str]:
    data = work / "sci.jsonl"
    rows = [("one", "#### 1e3"), ("two", "#### 2.5E-1"), ("three", "#### 12eggs")]
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    out = work / "sci_eval"
    ckpt = newest_ckpt(BASE) / "policy"
    res = cli(
        "rlexp-eval",
        f"checkpoint={ckpt}",
        "task=gsm8k",
        f"task.train_file={data}",
        f"task.test_file={data}",
        "n_samples=1",
        "max_new_tokens=4",
        f"output_dir={out}",
    )
    if res.rc != 0:
        return False, f"exit {res.rc}: {clip(res.last_line)}"
    import pandas as pd  # noqa: PLC0415

    gold = pd.read_parquet(out / "samples.parquet").sort_values("problem_id")["gold"].tolist()
    return sorted(gold) == sorted(["1000", "0.25", "12"]), f"gold answers read: {gold}"


def pairs_case(lines: bytes, *needles: str, name: str) -> Callable[[Path], tuple[bool, str]]:
    def case(work: Path) -> tuple[bool, str]:
        path = work / f"{name}.jsonl"
        path.write_bytes(lines)
        return one_line_error(
            train(work / name, "algorithm=dpo", f"algorithm.dpo.pairs_file={path}"),
            str(path),
            *needles,
        )

    return case


def error_case(
    *args: str, needles: Sequence[str], tool: str = "rlexp-train", tiny: bool = True
) -> Callable[[Path], tuple[bool, str]]:
    """A command that must stop at once with one line naming ``needles``, writing no run
    (``tiny``: on the TINY sizes of the embedded model)."""

    def case(work: Path) -> tuple[bool, str]:
        out = work / f"err_{len(list(work.iterdir()))}"
        if tool == "rlexp-train" and tiny:
            res = train(out, *args)
        else:
            res = cli(tool, *args, f"output_dir={out}")
        ok, text = one_line_error(res, *needles)
        wrote = (out / "metrics.jsonl").exists() or (out / "checkpoints").exists()
        return ok and not wrote, text + ("" if not wrote else "; but it wrote a run")

    return case


def hydra_unknown_key(work: Path) -> tuple[bool, str]:
    """A key the chosen option does not have: Hydra's own override error (several lines)."""
    res = train(work / "run", "model.dtype=foo")
    line = next((ln for ln in res.out.splitlines() if ln.startswith("Key ")), res.last_line)
    ok = res.rc != 0 and "Traceback" not in res.out and "'dtype' not in 'TinyModelConfig'" in line
    return ok, f"exit {res.rc} after {res.wall_s:.0f} s (Hydra's override error): `{clip(line)}`"


def typo_resume_dir(work: Path) -> tuple[bool, str]:
    typo = work / "no_such_run"
    res = cli("rlexp-train", "resume=true", f"output_dir={typo}")
    ok, text = one_line_error(res, str(typo))
    return ok and not (typo / "metrics.jsonl").exists(), text


def model_name_outside_cache(work: Path) -> tuple[bool, str]:
    cache = work / "cache_guard" / "cache"
    res = train(work / "name_run", "model.name=../../escaped", cache=cache)
    ok, text = one_line_error(res, "model.name")
    escaped = (work / "escaped").exists() or (cache.parent.parent / "escaped").exists()
    return ok and not escaped, f"{text}; nothing written outside cache_dir: {not escaped}"


# --- item 9: a line longer than the model holds ------------------------------------------------
def huge_gsm8k_line(work: Path) -> tuple[bool, str]:
    data = work / "huge.jsonl"
    short = json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n"
    huge = json.dumps({"question": "x" * 2_000_000, "answer": "#### 3"}) + "\n"
    data.write_text(short * 2 + huge + short)
    out = work / "huge_run"
    args = [
        *TINY,
        "task=gsm8k",
        f"task.train_file={data}",
        f"task.test_file={data}",
        "task.n_test=null",
        "task.n_train=null",
    ]
    start = time.perf_counter()
    proc = subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "maxrss_kb=%M",
            str(BIN / "rlexp-train"),
            *args,
            f"output_dir={out}",
            f"cache_dir={CACHE}",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=WORK,
        timeout=300,
    )
    wall = time.perf_counter() - start
    rss = next(
        (ln for ln in proc.stderr.splitlines() if ln.startswith("maxrss_kb=")), "maxrss_kb=0"
    )
    res = Result(proc.returncode, proc.stdout + proc.stderr.replace(rss, ""), wall)
    ok, text = one_line_error(res, str(data), "line 3", "max_position_embeddings")
    mb = int(rss.split("=")[1]) / 1024
    return ok and mb < 2000, f"{text}; peak RSS {mb:.0f} MB"


# --- item 10: signals and a full disk ------------------------------------------------------------
def signalled(sig: signal.Signals, code: int) -> Callable[[Path], tuple[bool, str]]:
    def case(work: Path) -> tuple[bool, str]:
        out = work / f"sig_{sig.name}"
        proc = start_train(out, "steps=40", "save_every=2", "eval_every=40")
        wait_for(out / "checkpoints" / "step_000002", 180)
        proc.send_signal(sig)
        text_out, _ = proc.communicate(timeout=120)
        res = Result(proc.returncode, text_out, 0.0)
        info = json.loads((out / "run_info.json").read_text())
        ckpt = newest_ckpt(out)
        from tests.wandb_offline import read_offline_runs  # noqa: PLC0415

        wandb_exit = read_offline_runs(out)[-1]["exit_code"]
        resumed = cli("rlexp-train", "resume=true", f"output_dir={out}", "steps=6")
        steps = steps_logged(out)
        stop = f"rlexp: stopped by {sig.name}; the run is marked failed"
        said = next((ln for ln in res.out.splitlines() if stop in ln), res.last_line)
        ok = (
            said.startswith(stop)  # on a line of its own, not after the progress bar
            and res.rc == code
            and "Traceback" not in res.out
            and info["status"] == "failed"
            and sig.name in info["error"]
            and wandb_exit == 1
            and resumed.rc == 0
            and steps == list(range(7))
        )
        return ok, (
            f"exit {res.rc}: `{clip(said, 120)}`; run_info {info['status']} "
            f"(`{clip(info['error'], 60)}`), W&B exit code {wandb_exit}, kept {ckpt.name}; "
            f"resume=true: exit {resumed.rc}, steps 0..6 each once: {steps == list(range(7))}"
        )

    return case


def full_disk(work: Path) -> tuple[bool, str]:
    mount = work / "tiny_disk"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=700k", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        return True, "skipped: mounting a tmpfs needs root"
    try:
        out = mount / "run"
        res = train(out, "steps=20", "save_every=1", "eval_every=20")
        tmp_left = [
            p.name for p in out.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")
        ]
        try:
            info = json.loads((out / "run_info.json").read_text())["status"]
        except (OSError, ValueError) as err:
            info = f"unreadable ({err})"
        ckpts = [p.name for p in sorted((out / "checkpoints").glob("step_*"))]
        ok = (
            res.rc != 0
            and "could not write" in res.last_line
            and not tmp_left
            and info in ("running", "failed")
        )
        return ok, (
            f"exit {res.rc}: `{clip(res.last_line, 140)}`; leftover .tmp: {tmp_left or 'none'}; "
            f"run_info.json readable, status {info}; intact checkpoints {ckpts}"
        )
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# --- item 11: corrupt files name themselves; resume falls back -----------------------------------
def corrupt_then_resume(what: str) -> Callable[[Path], tuple[bool, str]]:
    def case(work: Path) -> tuple[bool, str]:
        run = copy_base(work, f"corrupt_{what}")
        ckpt = newest_ckpt(run)
        target = (
            ckpt / "trainer_state.pt"
            if what != "weights"
            else ckpt / "policy" / "model.safetensors"
        )
        if what == "pickle":

            class Evil:
                def __reduce__(self):
                    return (os.system, (f"touch {work / 'PWNED'}",))

            target.write_bytes(pickle.dumps(Evil()))
        else:
            target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        res = cli("rlexp-train", "resume=true", f"output_dir={run}", "steps=6")
        steps = steps_logged(run)
        warned = (
            target.name in res.out
            and "resuming from " + str(run / "checkpoints" / "step_000002") in res.out
        )
        ok = res.rc == 0 and warned and steps == list(range(7)) and not (work / "PWNED").exists()
        return ok, (
            f"exit {res.rc}; a warning names {target.name} and falls back to step_000002: {warned}; "
            f"steps 0..6 each once: {steps == list(range(7))}"
            + ("; the pickle's code did not run" if what == "pickle" else "")
        )

    return case


def corrupt_sft_cache(work: Path) -> tuple[bool, str]:
    cache = work / "cache_corrupt"
    shutil.copytree(CACHE, cache)
    weights = next(cache.rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    out = work / "cache_run"
    ok, text = one_line_error(train(out, "steps=2", cache=cache), weights.name)
    return ok and not (out / "metrics.jsonl").exists(), text + "; no RL step ran"


def corrupt_run_info(work: Path) -> tuple[bool, str]:
    run = copy_base(work, "corrupt_info")
    (run / "run_info.json").write_text('{"status": "runn')
    res = cli("rlexp-train", "resume=true", f"output_dir={run}", "steps=6")
    ok = res.rc == 0 and "run_info.json" in res.out and status(run) == "finished"
    return (
        ok,
        f"exit {res.rc}; a warning names run_info.json: {'run_info.json' in res.out}; new record: {status(run)}",
    )


# --- item 12: sweeps ----------------------------------------------------------------------------
def sweep_with_unreadable_member(work: Path) -> tuple[bool, str]:
    sweep = work / "sweep"
    res = cli(
        "rlexp-train",
        "-m",
        *TINY,
        "steps=2",
        "eval_every=2",
        "seed=0,1",
        f"cache_dir={CACHE}",
        f"hydra.sweep.dir={sweep}",
        timeout=600,
    )
    if res.rc != 0:
        return False, f"the sweep failed: {clip(res.last_line)}"
    member = sorted(p for p in sweep.iterdir() if (p / "metrics.jsonl").exists())[1]
    (member / "metrics.jsonl").write_bytes(b"\x00\xff{not json\n")
    analysis = cli("rlexp-analyze", str(sweep))
    named = member.name in analysis.out
    return analysis.rc == 0 and named and "Traceback" not in analysis.out, (
        f"rlexp-analyze exit {analysis.rc}; the damaged member {member.name} listed as failed: {named}; "
        f"figures of the other member drawn: {any(sweep.rglob('*.png'))}"
    )


def sweep_where_every_member_fails(work: Path) -> tuple[bool, str]:
    res = cli(
        "rlexp-train",
        "-m",
        *TINY,
        "algorithm.max_grad_norm=-1,0",
        f"cache_dir={CACHE}",
        f"hydra.sweep.dir={work / 'bad_sweep'}",
    )
    return one_line_error(res, "every member of the sweep failed")


CASES = [
    Case(
        1,
        "`rlexp-eval` into a dir holding another evaluation (n_samples 2 → 4, T 1 → 0.5)",
        eval_into_another_evals_dir,
    ),
    Case(1, "`rlexp-eval` of another checkpoint into the same dir", eval_of_another_checkpoint),
    Case(1, "`rlexp-study` rerun with `study.temperature=0.5`", study_rerun_with_other_settings),
    Case(
        2, "`resume=true algorithm.lr=0.5`", resume_with_changed("algorithm.lr=0.5", "algorithm.lr")
    ),
    Case(
        2,
        "`resume=true model.hidden_size=48`",
        resume_with_changed("model.hidden_size=48", "model.hidden_size"),
    ),
    Case(2, "`resume=true` without repeating the run's overrides", resume_without_overrides),
    Case(3, "`resume=true steps=1` (checkpoint at step 4)", resume_steps_below_checkpoint),
    Case(
        4,
        "`algorithm.max_grad_norm=-1`",
        error_case("algorithm.max_grad_norm=-1", needles=["algorithm.max_grad_norm"]),
    ),
    Case(
        4,
        "`algorithm.max_grad_norm=0`",
        error_case("algorithm.max_grad_norm=0", needles=["algorithm.max_grad_norm"]),
    ),
    Case(5, "two runs in one directory", concurrent_runs),
    Case(
        5,
        "a new run (no `resume=true`) into a finished run's directory",
        new_run_into_a_finished_run,
    ),
    Case(
        6,
        "weights exploded but finite (`algorithm=ppo algorithm.lr=1`, no clipping)",
        exploded_weights,
    ),
    Case(7, "GSM8K answers `#### 1e3`, `#### 2.5E-1`, `#### 12eggs`", gsm8k_scientific_answer),
    Case(
        7,
        "DPO pairs with chosen == rejected",
        pairs_case(
            b'{"prompt": "1+2=", "chosen": "####3", "rejected": "####3"}\n',
            "line 1",
            "same text",
            name="same_pairs",
        ),
    ),
    Case(7, "`+algorithm.foo=1`", error_case("+algorithm.foo=1", needles=["algorithm.foo"])),
    Case(7, "`threads=-1`", error_case("threads=-1", needles=["threads"])),
    Case(7, "`resume=true` with a typo'd run directory", typo_resume_dir),
    Case(7, "`model.name=../../escaped`", model_name_outside_cache),
    Case(8, "`eval_every=0`", error_case("eval_every=0", needles=["eval_every"])),
    Case(8, "`save_every=0`", error_case("save_every=0", needles=["save_every"])),
    Case(8, "`sft.eval_every=0`", error_case("sft.eval_every=0", needles=["sft.eval_every"])),
    Case(
        8,
        "`algorithm=dpo eval_every=0` (offline trainer)",
        error_case("algorithm=dpo", "eval_every=0", needles=["eval_every"]),
    ),
    Case(8, "`eval.n_problems=0`", error_case("eval.n_problems=0", needles=["eval.n_problems"])),
    Case(9, "a 2 MB GSM8K question on line 3", huge_gsm8k_line),
    Case(
        10,
        "SIGTERM after the step-2 checkpoint, then `resume=true`",
        signalled(signal.SIGTERM, 143),
    ),
    Case(
        10,
        "SIGINT (Ctrl-C) after the step-2 checkpoint, then `resume=true`",
        signalled(signal.SIGINT, 130),
    ),
    Case(10, "a full disk (700 kB tmpfs) while checkpointing", full_disk),
    Case(
        11,
        "truncated `trainer_state.pt` in the newest checkpoint, `resume=true`",
        corrupt_then_resume("state"),
    ),
    Case(
        11,
        "truncated `model.safetensors` in the newest checkpoint, `resume=true`",
        corrupt_then_resume("weights"),
    ),
    Case(
        11, "a crafted pickle as `trainer_state.pt`, `resume=true`", corrupt_then_resume("pickle")
    ),
    Case(11, "a truncated cached SFT base", corrupt_sft_cache),
    Case(11, "a cut `run_info.json`, `resume=true`", corrupt_run_info),
    Case(
        12,
        "a sweep member's `metrics.jsonl` is garbage, `rlexp-analyze`",
        sweep_with_unreadable_member,
    ),
    Case(12, "a multirun whose every member fails", sweep_where_every_member_fails),
    Case(13, "`eval.top_p=0`", error_case("eval.top_p=0", needles=["eval.top_p"])),
    Case(13, "`eval.batch_size=0`", error_case("eval.batch_size=0", needles=["eval.batch_size"])),
    Case(13, "`task.n_train=0`", error_case("task.n_train=0", needles=["task.n_train"])),
    Case(13, "`device=foo`", error_case("device=foo", needles=["device"])),
    Case(
        13,
        "`model=hf model.dtype=foo`",
        error_case("model=hf", "model.dtype=foo", needles=["model.dtype"], tiny=False),
    ),
    Case(13, "`model.dtype=foo` with `model=tiny` (no such key)", hydra_unknown_key),
    Case(13, "`seed=2147483648`", error_case("seed=2147483648", needles=["seed"])),
    Case(
        13,
        "`algorithm=ppo algorithm.critic.lr=-1`",
        error_case("algorithm=ppo", "algorithm.critic.lr=-1", needles=["algorithm.critic.lr"]),
    ),
    Case(
        13,
        "`algorithm.weight_decay=-1`",
        error_case("algorithm.weight_decay=-1", needles=["algorithm.weight_decay"]),
    ),
    Case(13, "`sft.lr=0`", error_case("sft.lr=0", needles=["sft.lr"])),
    Case(
        13,
        "`rlexp-eval chunk_problems=0`",
        lambda w: error_case(
            f"run_dir={BASE}", "chunk_problems=0", needles=["chunk_problems"], tool="rlexp-eval"
        )(w),
    ),
    Case(
        13,
        "a pairs file that is not UTF-8",
        pairs_case(
            b'{"prompt": "1+2=", "chosen": "####3", "rejected": "\xff\xfe"}\n',
            "line 1",
            "UTF-8",
            name="latin_pairs",
        ),
    ),
]


def main() -> None:
    global WORK, BASE, CACHE, ENV
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated issue-15 item numbers")
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep")
    args = parser.parse_args()
    WORK = args.keep or Path(tempfile.mkdtemp(prefix="rlexp_hostile_"))
    WORK.mkdir(parents=True, exist_ok=True)
    CACHE, BASE = WORK / "cache", WORK / "base"
    ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT)}
    only = {int(i) for i in args.only.split(",") if i}
    if not (BASE / "run_info.json").exists() or status(BASE) != "finished":
        shutil.rmtree(BASE, ignore_errors=True)
        res = train(BASE, "steps=4", "save_every=2", "eval_every=4")
        if res.rc != 0:
            raise SystemExit(f"the base run failed:\n{res.out[-3000:]}")
    start, failures = time.perf_counter(), 0
    print("| item | case | what happened | verdict |\n|---:|---|---|---|")
    for case in CASES:
        if only and case.item not in only:
            continue
        work = WORK / f"case_{CASES.index(case):02d}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            ok, text = case.check(work)
        except Exception as err:  # a broken case is a failed case, with its reason
            ok, text = False, f"the check itself failed: {type(err).__name__}: {clip(str(err))}"
        failures += not ok
        verdict = "skipped" if text.startswith("skipped") else ("ok" if ok else "**FAIL**")
        print(f"| {case.item} | {case.name} | {text} | {verdict} |", flush=True)
    print(f"\n{failures} failed; {time.perf_counter() - start:.0f} s; runs under {WORK}")
    sys.exit(1 if failures else 0)


WORK = BASE = CACHE = Path()
ENV: dict[str, str] = {}

if __name__ == "__main__":
    main()
