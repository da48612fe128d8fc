"""Start-up time: `import viewfinder`, `viewfinder [command] --help`, `import pydantic, rich`.

Run: python benchmarks/bench_startup.py [--repeat 15] [--against OLD_CHECKOUT]

Each command runs in a fresh interpreter, interleaved so that all of them see the same
machine load; the median wall time of each is printed with its ratio to the baseline
(`python -c "import pydantic, rich"`, the floor any pydantic + rich CLI pays). The goal
(issue 12): each at most 0.35 s, or 2x the baseline measured side by side. `--against`
runs the same viewfinder commands from another checkout too (its directory first on
PYTHONPATH), in the same rounds, for an old/new ratio; without it, to measure another
checkout alone, run this file from that checkout. The commands run outside any checkout,
with the measured one first on PYTHONPATH.
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

BASELINE = 'python -c "import pydantic, rich"'
GOAL_SECONDS = 0.35
GOAL_RATIO = 2.0

VIEWFINDER_COMMANDS = {
    "import viewfinder": ["-c", "import viewfinder"],
    "viewfinder --help": ["-m", "viewfinder", "--help"],
    **{
        f"viewfinder {name} --help": ["-m", "viewfinder", name, "--help"]
        for name in ("analyze", "batch", "compare", "cost", "serve")
    },
}
"""Label -> the interpreter arguments of one viewfinder command, run in a fresh process."""

Run = tuple[list[str], dict[str, str] | None]
"""A command line and its environment (None: this process's)."""


def _seconds(run: Run) -> float:
    """Wall time of one fresh run, which must succeed."""
    command, env = run
    start = time.perf_counter()
    subprocess.run(
        command,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tempfile.gettempdir(),  # not a checkout: `-m` puts the working directory first
    )
    return time.perf_counter() - start


def _env(checkout: str) -> dict[str, str]:
    """This process's environment with `checkout` first on PYTHONPATH."""
    path = os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _runs(against: str | None) -> dict[str, Run]:
    """Label -> run: the baseline first, then this checkout's commands, then `against`'s."""
    runs: dict[str, Run] = {BASELINE: ([sys.executable, "-c", "import pydantic, rich"], None)}
    here = _env(str(Path(__file__).resolve().parents[1]))
    for label, arguments in VIEWFINDER_COMMANDS.items():
        runs[label] = ([sys.executable, *arguments], here)
    if against is not None:
        there = _env(str(Path(against).resolve()))
        for label, arguments in VIEWFINDER_COMMANDS.items():
            runs[f"{label} (against)"] = ([sys.executable, *arguments], there)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="fresh runs of each command")
    parser.add_argument(
        "--against", metavar="CHECKOUT", help="another checkout to run side by side"
    )
    args = parser.parse_args()
    runs = _runs(args.against)
    for run in runs.values():  # warm the file cache and .pyc files
        _seconds(run)
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(args.repeat):
        for label, run in runs.items():
            times[label].append(_seconds(run))
    against = f" --against {args.against}" if args.against else ""
    print(f"command: python benchmarks/bench_startup.py --repeat {args.repeat}{against}")
    medians = {label: statistics.median(runs) for label, runs in times.items()}
    baseline = medians[BASELINE]
    print(f"{'':44} {'median s':>9} {'min s':>7} {'x baseline':>11} {'goal':>5}")
    for label, runs in times.items():
        median = medians[label]
        met = median <= GOAL_SECONDS or median <= GOAL_RATIO * baseline
        goal = "" if label == BASELINE else ("ok" if met else "no")
        print(f"{label:44} {median:9.3f} {min(runs):7.3f} {median / baseline:11.2f} {goal:>5}")
    if args.against:
        print("this checkout / --against, by median:")
        for label in VIEWFINDER_COMMANDS:
            print(f"  {label:42} {medians[label] / medians[f'{label} (against)']:9.2f}")
    print(f"goal: each at most {GOAL_SECONDS} s, or {GOAL_RATIO:g}x the baseline")


if __name__ == "__main__":
    main()
