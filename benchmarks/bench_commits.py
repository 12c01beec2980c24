"""`stylemapgan bench` on two commits, interleaved in one run: does a change make any path slower?

Each commit is checked out into a temporary detached worktree and benched in its own process (PYTHONPATH
pointing at that tree's `src`), alternating A, B, A, B, ... so load changes on a shared machine hit both alike.
Reported per config and per latency row: the median over rounds of each commit's median, and B/A.

Usage: python benchmarks/bench_commits.py BASE_REV [NEW_REV] [--config paper-256,shipped] [--rounds 3]
       [--threads 2] [--json out.json]
NEW_REV defaults to the working tree itself (uncommitted changes included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROWS = ("encoder_ms", "generator_ms", "edit_ms", "edit_ref_ms", "edit_w_ms", "reconstruct_ms")
REPO = Path(__file__).resolve().parents[1]


def bench_once(src: Path, configs: str, threads: int, out: Path) -> dict[str, dict[str, float]]:
    """One `stylemapgan bench --no-throughput` process on the tree whose package lives in `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "stylemapgan", "bench", "--config", configs, "--no-throughput", "--no-training",
           "--no-memory", "--threads", str(threads), "--json", str(out)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    return {r["config"]: {k: float(r[k]) for k in ROWS if k in r} for r in report["results"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="git revision A (e.g. HEAD~3)")
    ap.add_argument("new", nargs="?", default=None, help="git revision B (default: the working tree)")
    ap.add_argument("--config", default="paper-256,shipped", help="configs passed to stylemapgan bench")
    ap.add_argument("--rounds", type=int, default=3, help="A/B rounds (each a full bench process per side)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--json", default=None, help="also write the table as JSON")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds: must be >= 1")

    with tempfile.TemporaryDirectory(prefix="bench-commits-") as tmp:
        trees: dict[str, Path] = {}
        for label, rev in (("A", args.base), ("B", args.new)):
            if rev is None:
                trees[label] = REPO / "src"
                continue
            path = Path(tmp) / label
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(path), rev], check=True)
            trees[label] = path / "src"
        try:
            runs: dict[str, list[dict[str, dict[str, float]]]] = {"A": [], "B": []}
            for i in range(args.rounds):
                for label in ("A", "B"):
                    runs[label].append(bench_once(trees[label], args.config, args.threads, Path(tmp) / "r.json"))
                    print(f"round {i + 1}/{args.rounds} {label} done", file=sys.stderr, flush=True)
        finally:
            for label in ("A", "B"):
                if trees[label] != REPO / "src":
                    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                    str(trees[label].parent)], check=False)

    table = {}
    print(f"A = {args.base}, B = {args.new or 'working tree'}; {args.rounds} rounds, {args.threads} threads; "
          "median over rounds of each bench's batch-1 median (ms)")
    print(f"{'config':28s} {'row':16s} {'A ms':>9s} {'B ms':>9s} {'B/A':>6s}")
    for config in runs["A"][0]:
        for row in ROWS:
            if row not in runs["A"][0][config]:
                continue
            a = statistics.median(r[config][row] for r in runs["A"])
            b = statistics.median(r[config][row] for r in runs["B"])
            table.setdefault(config, {})[row] = {"A_ms": a, "B_ms": b, "ratio": b / a}
            print(f"{config:28s} {row:16s} {a:9.1f} {b:9.1f} {b / a:6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"base": args.base, "new": args.new, "rounds": args.rounds,
                                               "threads": args.threads, "table": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
