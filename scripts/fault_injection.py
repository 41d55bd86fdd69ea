"""Soak test: kill tiny training runs with SIGKILL at random points, resume, compare.

The long version of ``tests/test_reliability_faults.py`` (it reuses that file's launcher and
checks). Each iteration starts a fresh run and kills it up to ``--max-kills`` times, each time at a
randomly chosen point: after a random optimizer step, half-way through writing ``last.pt`` or
``best.pt``, just before the atomic rename of a run file, after an epoch's log line, inside
validation, before ``metrics.json``, or from outside (``kill -9``) a random time after the run
folder appears. After every kill the run folder must be consistent (every existing file parses,
``last.pt`` loads); then the run is resumed (possibly to be killed again). At the end of the
iteration the run is finished without faults and its metrics, ``metrics.jsonl`` and weights are
compared with an uninterrupted reference run; stale temporary files are counted.

Usage::

    python scripts/fault_injection.py --iterations 20 --max-kills 3 --seed 0
    python scripts/fault_injection.py --iterations 5 --keep runs/soak --json soak.json
    python scripts/fault_injection.py --iterations 6 --dropout 0.5   # masks must match too

Exit code 0 when every run recovered to the reference result, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import test_reliability_faults as F  # noqa: E402  (the launcher and checks live there)

POINTS = ("step", "write-last", "write-best", "before-rename", "after-log", "validate",
          "finish", "external")


def random_plan(rng: random.Random, config: dict) -> dict:
    """A kill point and which occurrence of it to hit."""
    epochs = config["epochs"]
    steps = epochs * F.STEPS_PER_EPOCH
    every = config.get("checkpoint_every") or 0
    last_writes = epochs + (epochs * ((F.STEPS_PER_EPOCH - 1) // every) if every else 0)
    point = rng.choice(POINTS)
    if point == "step":
        return {"point": point, "nth": rng.randint(1, steps)}
    if point in ("write-last", "before-rename"):
        plan = {"point": point, "nth": rng.randint(1, last_writes)}
        if point == "before-rename":
            plan["file"] = rng.choice(["last.pt", "best.pt", "metrics.jsonl", "config.json"])
            plan["nth"] = rng.randint(1, epochs)
        return plan
    if point in ("write-best", "after-log", "validate"):
        return {"point": point, "nth": rng.randint(1, epochs)}
    if point == "finish":
        return {"point": point}
    return {"point": "external", "delay": rng.uniform(0.0, 4.0)}


def run_once(run: Path, plan: dict, resume: bool, config: dict) -> str:
    """Start (or resume) the run with ``plan``; 'killed', 'finished' or 'failed: ...'."""
    if plan["point"] == "external":
        # the delay counts from the moment the run folder appears (interpreter start-up takes
        # seconds, and a kill then would only test the start-up)
        proc = F.launch(run, {"point": "none"}, config=config, resume=resume, wait=False)
        started = time.monotonic()
        while not run.exists() and proc.poll() is None and time.monotonic() - started < 120:
            time.sleep(0.01)
        deadline = time.monotonic() + plan["delay"]
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        out = proc.communicate(timeout=120)[0]
        code = proc.returncode
    else:
        done = F.launch(run, plan, config=config, resume=resume)
        code, out = done.returncode, done.stdout + done.stderr
    if code == -signal.SIGKILL:
        return "killed"
    if code == 0:
        return "finished"
    tail = " | ".join(line.strip() for line in out.strip().splitlines()[-3:])
    return f"failed (exit {code}): {tail}"


def reference_run(root: Path, config: dict) -> Path:
    run = root / "reference" / "run"
    outcome = run_once(run, {"point": "none"}, False, config)
    if outcome != "finished":
        raise SystemExit(f"the reference run failed: {outcome}")
    return run


def compare(run: Path, reference: Path) -> list[str]:
    problems = []
    if F.final_metrics(run) != F.final_metrics(reference):
        problems.append("final metrics differ")
    if F.comparable_log(run) != F.comparable_log(reference):
        problems.append("metrics.jsonl differs")
    for name in ("last.pt", "best.pt"):
        if not F.same_weights(F.weights(run, name), F.weights(reference, name)):
            problems.append(f"{name} weights differ")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--max-kills", type=int, default=3, help="kills per run at most")
    parser.add_argument("--epochs", type=int, default=F.CONFIG["epochs"])
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule")
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    parser.add_argument("--json", type=Path, help="write the summary as JSON")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="train ce with timm's drop_rate (the model draws from the random "
                             "state every step, so a resume must restore it exactly)")
    args = parser.parse_args(argv)
    config = {**F.CONFIG, "epochs": args.epochs}
    if args.dropout:
        config.update(method="ce", model_options={"drop_rate": args.dropout})
    rng = random.Random(args.seed)
    root = args.keep or Path(tempfile.mkdtemp(prefix="hafcls-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    reference = reference_run(root, config)
    totals = {"iterations": 0, "faults_injected": 0, "faults_not_reached": 0,
              "runs_recovered": 0, "runs_lost": 0, "inconsistent_folders": 0,
              "stale_temp_files": 0}
    failures = []
    for it in range(args.iterations):
        run = root / f"iter{it:03d}" / "run"
        kills, history = 0, []
        for _ in range(rng.randint(1, args.max_kills)):
            plan = random_plan(rng, config)
            outcome = run_once(run, plan, resume=run.exists(), config=config)
            history.append((plan, outcome))
            if outcome == "killed":
                kills += 1
                try:
                    F.check_folder_consistent(run)
                except Exception as err:  # noqa: BLE001 -- report any damage, keep soaking
                    totals["inconsistent_folders"] += 1
                    failures.append(f"iter {it}: inconsistent after {plan}: {err}")
            elif outcome == "finished":
                totals["faults_not_reached"] += 1
                break
            else:
                failures.append(f"iter {it}: {plan}: {outcome}")
                break
        totals["faults_injected"] += kills
        final = run_once(run, {"point": "none"}, resume=run.exists(), config=config)
        problems = [] if final == "finished" else [final]
        if not problems:
            problems = compare(run, reference)
        stale = F.leftover_temp_files(run)
        totals["stale_temp_files"] += len(stale)
        totals["iterations"] += 1
        if problems:
            totals["runs_lost"] += 1
            failures.append(f"iter {it}: {problems} after {history}")
        else:
            totals["runs_recovered"] += 1
        print(f"iter {it:3d}: {kills} kill(s) "
              f"[{', '.join(p['point'] for p, o in history if o == 'killed')}] -> "
              f"{'recovered' if not problems else 'LOST: ' + '; '.join(problems)}"
              + (f" ({len(stale)} stale temp files)" if stale else ""), flush=True)
        if args.keep is None:
            shutil.rmtree(run.parent, ignore_errors=True)
    totals["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(totals, indent=2))
    for line in failures:
        print("FAIL", line)
    if args.json:
        args.json.write_text(json.dumps({**totals, "failures": failures}, indent=2) + "\n")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if not failures and totals["runs_lost"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
