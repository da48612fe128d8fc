"""Start-up time: `import viewfinder` and `viewfinder --help` beside `import pydantic, rich`.

Run: python benchmarks/bench_startup.py [--repeat 15]

Each command runs in a fresh interpreter, interleaved so that all three see the same
machine load; the median wall time of each is printed with its ratio to the baseline
(`python -c "import pydantic, rich"`, the floor any pydantic + rich CLI pays). The goal
(issue 12): both at most 0.35 s, or 2x the baseline measured side by side. To measure
another checkout, run this file with that checkout first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    'python -c "import pydantic, rich"': [sys.executable, "-c", "import pydantic, rich"],
    "import viewfinder": [sys.executable, "-c", "import viewfinder"],
    "viewfinder --help": [sys.executable, "-m", "viewfinder", "--help"],
}
"""Label -> the command run in a fresh process; the first is the baseline."""


def _seconds(command: list[str]) -> float:
    """Wall time of one fresh run of `command`, which must succeed."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="fresh runs of each command")
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the file cache and .pyc files
        _seconds(command)
    times: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for _ in range(args.repeat):
        for label, command in COMMANDS.items():
            times[label].append(_seconds(command))
    print(f"command: python benchmarks/bench_startup.py --repeat {args.repeat}")
    baseline = statistics.median(next(iter(times.values())))
    print(f"{'':36} {'median s':>9} {'min s':>7} {'x baseline':>11}")
    for label, runs in times.items():
        median = statistics.median(runs)
        print(f"{label:36} {median:9.3f} {min(runs):7.3f} {median / baseline:11.2f}")


if __name__ == "__main__":
    main()
