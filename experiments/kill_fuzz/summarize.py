"""Print kills.json (written by tests/integration/test_kill_fuzz.py) as the Markdown tables of README.md.

    python experiments/kill_fuzz/summarize.py experiments/kill_fuzz/kills.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(path: Path) -> None:
    results = json.loads(path.read_text())
    print("| task | seed | kills | runs | chains compared | finished before the kill | reference s | window s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['task']} | {r['seed']} | {len(r['kills'])} | {r['runs']} | {r['chains']} | "
              f"{r['finished_before_kill']} | {r['reference_s']} | {r['window_s']} | {r['wall_s']} |")  # fmt: skip
    for r in results:
        extra = {k: v for k, v in r.items() if k not in {"task", "seed", "kills", "runs", "chains", "finished_before_kill",
                                                        "reference_s", "window_s", "wall_s"}}  # fmt: skip
        print(f"\n**{r['task']}**" + (f" ({', '.join(f'{k} = {v}' for k, v in extra.items())})" if extra else ""))
        print("\n| # | chain | delay s | what was on disk at the kill |\n|---|---|---|---|")
        for i, k in enumerate(r["kills"], 1):
            print(f"| {i} | {k['chain']} | {k['delay_s']:.2f} | {k['point']} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
