"""Start-up of the console scripts: what a user waits for at ``--help``, at a tab completion, and
at ``--cfg job`` (the config composed and printed, no run).

Run (the machine idle): .venv/bin/python benchmarks/bench_cli.py [--repeats 5]
Target (issue 16, item 3; 2 CPU cores): every command below < 2 s, median of the repeats.
Each command is a fresh process, as the shell starts it; the first run of each is a warm-up (the
OS file cache) and is not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TARGET_S = 2.0


def commands() -> dict[str, tuple[list[str], dict[str, str]]]:
    """{label: (argv, extra environment)}."""
    completion = {"COMP_LINE": "rlexp-train algorithm=", "COMP_POINT": "22"}
    return {
        "rlexp-train --help": ([str(BIN / "rlexp-train"), "--help"], {}),
        "rlexp-eval --help": ([str(BIN / "rlexp-eval"), "--help"], {}),
        "rlexp-study --help": ([str(BIN / "rlexp-study"), "--help"], {}),
        "tab completion (algorithm=)": (
            [str(BIN / "rlexp-train"), "-sc", "query=bash"],
            completion,
        ),
        "rlexp-train --cfg job": ([str(BIN / "rlexp-train"), "--cfg", "job"], {}),
    }


def time_command(argv: list[str], env: dict[str, str], repeats: int, cwd: str) -> list[float]:
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        out = subprocess.run(argv, env=os.environ | env, cwd=cwd, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
        if i:  # the first run warms the file cache
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"| command | median s | min s | max s | < {TARGET_S:.0f} s |")
    print("|---|---|---|---|---|")
    worst = 0.0
    with tempfile.TemporaryDirectory() as cwd:  # from an empty directory, as a user would
        for label, (argv, env) in commands().items():
            t = time_command(argv, env, args.repeats, cwd)
            med = statistics.median(t)
            worst = max(worst, med)
            ok = "yes" if med < TARGET_S else "NO"
            print(f"| `{label}` | {med:.2f} | {min(t):.2f} | {max(t):.2f} | {ok} |")
    print(
        f"slowest median {worst:.2f} s; target < {TARGET_S:.0f} s: {'met' if worst < TARGET_S else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
