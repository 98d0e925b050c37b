"""Start-up cost of the command line: ``python -m ocrft --help`` against two baselines.

Each command is a fresh interpreter, run ``--repeats`` times, interleaved so that other work
on the machine slows every command alike; the median wall time of each is printed, and the
ratio of ``--help`` to ``python -c "import hydra"`` (what any Hydra app pays to start) and
to ``python -c pass``. ``--help`` composes the whole config and lists every group's
options, so it is also the upper bound of what ocrft does before a task starts.

    python bench/bench_cli_help.py [--repeats 5] [--budget 1.0]

Exits 1 if the median ``--help`` takes longer than ``--budget`` seconds (issue 23: 1.0 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

PASS, HYDRA, HELP = "python -c pass", 'python -c "import hydra"', "python -m ocrft --help"
COMMANDS = {
    PASS: [sys.executable, "-c", "pass"],
    HYDRA: [sys.executable, "-c", "import hydra"],
    HELP: [sys.executable, "-m", "ocrft", "--help"],
}


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=1.0, help="most seconds --help may take (median)")
    args = parser.parse_args()

    for cmd in COMMANDS.values():  # warm the file cache and the .pyc files
        _wall(cmd)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            times[name].append(_wall(cmd))
    median = {name: statistics.median(t) for name, t in times.items()}

    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; median of {args.repeats} runs each")
    for name, seconds in median.items():
        print(f"{name:28s} {seconds:6.3f} s  (min {min(times[name]):.3f}, max {max(times[name]):.3f})")
    help_s = median[HELP]
    print(f"ratio --help / import hydra: {help_s / median[HYDRA]:.2f}; --help / python -c pass: {help_s / median[PASS]:.2f}")
    if help_s > args.budget:
        print(f"--help took {help_s:.3f} s, over its budget of {args.budget} s")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
