"""Load test of the web editor: N concurrent browser sessions painting for D seconds on loopback.

Each session (own cookie, own keep-alive connection) uploads a source and a reference, then sends local
edits back to back, cycling through precomputed painted masks and shifts, as a page does while the user paints
(one request in flight per page; `--depth 2` keeps two in flight to exercise latest-wins superseding, whose
409 answers are counted apart from errors). Reports requests/s, client round-trip and server-side latency
percentiles (total, model, queue; from the X-Server-Ms / X-Infer-Ms / X-Queue-Ms headers), errors, and the
machine load (CPU busy over the run from /proc/stat, the server process's CPU, load averages).

`--refine on` adds one more session that runs Refine back to back (the server's largest step count, each
stopped by its time limit) during the measured load, to see how a refine affects the other sessions' edits;
`--refine compare` measures twice on the same server, without then with the refine, and reports both.

Usage:
    python benchmarks/bench_serving.py --url http://127.0.0.1:7860/          # a running server
    python benchmarks/bench_serving.py --preset cpu-64 [--threads 2]         # starts `stylemapgan serve` on a
                                                                             # random-init checkpoint
    [--ckpt FILE] [--sessions 8] [--duration 60] [--mode w|w_plus|mixed] [--depth 1] [--think-ms 0] [--json F]
    [--refine off|on|compare] [--refine-steps N]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image, ImageDraw

COOKIE = "stylemapgan_session"


# ---- payloads -------------------------------------------------------------------------------------------------


def test_image(seed: int, size: int) -> bytes:
    """A non-square PNG (exercises the crop), different per session."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size + size // 2, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(2, max(3, size // 4)))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def painted_masks(size: int, count: int = 24, seed: int = 0) -> list[str]:
    """Masks growing stroke by stroke, as the page sends them while painting (RGBA PNG data URLs)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    x, y = (float(v) for v in rng.uniform(size * 0.2, size * 0.8, 2))
    out = []
    for _ in range(count):
        nx = float(np.clip(x + rng.normal(0, size / 10), 0, size - 1))
        ny = float(np.clip(y + rng.normal(0, size / 10), 0, size - 1))
        draw.line((x, y, nx, ny), fill=(230, 25, 75, 255), width=max(1, size // 12))
        x, y = nx, ny
        buf = io.BytesIO()
        image.save(buf, "PNG")
        out.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    return out


# ---- one session ----------------------------------------------------------------------------------------------


@dataclass
class Sample:
    ok: bool
    status: int
    client_ms: float
    server_ms: float | None = None
    infer_ms: float | None = None
    queue_ms: float | None = None
    error: str = ""


@dataclass
class SessionClient:
    host: str
    port: int
    index: int
    cookie: str | None = None
    seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
                content_type: str | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if self.cookie:
            headers["Cookie"] = f"{COOKIE}={self.cookie}"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        got = {k.lower(): v for k, v in resp.getheaders()}
        cookie = got.get("set-cookie", "")
        if cookie.startswith(f"{COOKIE}="):
            self.cookie = cookie.split(";", 1)[0].split("=", 1)[1]
        return resp.status, got, data

    def next_seq(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq


def run_session(client: SessionClient, size: int, masks: list[str], mode: str, depth: int, stop_at: float,
                warm_until: float, think_s: float, samples: list[Sample], failures: list[str]) -> None:
    conn = http.client.HTTPConnection(client.host, client.port, timeout=120)
    try:
        status, _, body = client.request(conn, "GET", "/api/info")
        if status != 200:
            raise RuntimeError(f"info: {status} {body[:200]!r}")
        ids = []
        for k in range(2):
            status, _, body = client.request(conn, "POST", f"/api/upload?fit=crop&name=s{client.index}-{k}.png",
                                             test_image(client.index * 2 + k, max(size, 64)), "image/png")
            if status != 200:
                raise RuntimeError(f"upload: {status} {body[:200]!r}")
            ids.append(json.loads(body)["id"])
    except Exception as exc:
        failures.append(f"session {client.index} setup: {exc}")
        return
    finally:
        conn.close()

    def worker(lane: int) -> None:
        conn = http.client.HTTPConnection(client.host, client.port, timeout=120)
        step = lane
        while time.perf_counter() < stop_at:
            seq = client.next_seq()
            edit_mode = mode if mode != "mixed" else ("w" if step % 2 else "w_plus")
            shift = [(step % 7) - 3, (step % 5) - 2]
            payload = json.dumps({
                "source": ids[0], "references": [{"id": ids[1], "mask": masks[step % len(masks)], "shift": shift}],
                "mode": edit_mode, "alpha": 1.0, "seq": seq, "client": f"bench-{client.index}",
            }).encode()
            t0 = time.perf_counter()
            try:
                status, headers, body = client.request(conn, "POST", "/api/edit", payload, "application/json")
                elapsed = (time.perf_counter() - t0) * 1000
                if t0 >= warm_until:
                    if status == 200:
                        samples.append(Sample(True, status, elapsed, float(headers["x-server-ms"]),
                                              float(headers["x-infer-ms"]), float(headers["x-queue-ms"])))
                    else:
                        samples.append(Sample(False, status, elapsed, error=body[:200].decode(errors="replace")))
            except Exception as exc:  # connection errors count as errors
                conn.close()
                conn = http.client.HTTPConnection(client.host, client.port, timeout=120)
                if t0 >= warm_until:
                    samples.append(Sample(False, 0, (time.perf_counter() - t0) * 1000, error=repr(exc)))
            step += depth
            if think_s:
                time.sleep(think_s)
        conn.close()

    lanes = [threading.Thread(target=worker, args=(lane,), daemon=True) for lane in range(depth)]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()


@dataclass
class RefineRecord:
    status: int
    seconds: float
    steps: int | None = None


def run_refiner(host: str, port: int, size: int, steps: int, stop_at: float, records: list[RefineRecord],
                failures: list[str]) -> None:
    """One more session: upload an image, then Refine it back to back until `stop_at` (the last one may run on
    past it, to its own time limit)."""
    client = SessionClient(host, port, 10_000)
    conn = http.client.HTTPConnection(host, port, timeout=600)
    try:
        client.request(conn, "GET", "/api/info")
        status, _, body = client.request(conn, "POST", "/api/upload?fit=crop&name=refine.png",
                                         test_image(9_999, max(size, 64)), "image/png")
        if status != 200:
            raise RuntimeError(f"upload: {status} {body[:200]!r}")
        image_id = json.loads(body)["id"]
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            status, _, body = client.request(conn, "POST", "/api/refine", json.dumps(
                {"id": image_id, "steps": steps}).encode(), "application/json")
            took = time.perf_counter() - t0
            done = json.loads(body).get("steps") if status == 200 else None
            records.append(RefineRecord(status, took, done))
            if status != 200:
                time.sleep(0.2)
    except Exception as exc:
        failures.append(f"refiner: {exc}")
    finally:
        conn.close()


# ---- machine load -----------------------------------------------------------------------------------------------


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def process_cpu_seconds(pid: int) -> float | None:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (float(parts[11]) + float(parts[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


# ---- server ---------------------------------------------------------------------------------------------------


def start_server(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen[str], str]:
    ckpt = args.ckpt
    if ckpt is None:
        from stylemapgan.checkpoint import fresh_checkpoint, save_checkpoint
        from stylemapgan.config import get_preset

        ckpt = str(workdir / f"{args.preset}.safetensors")
        save_checkpoint(ckpt, fresh_checkpoint(get_preset(args.preset).model, 0, "bench"))
    cmd = [sys.executable, "-m", "stylemapgan", "serve", "--ckpt", ckpt, "--port", "0", "--host", "127.0.0.1"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        print(line.rstrip(), file=sys.stderr)
        found = re.search(r"open (http://\S+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain
            return proc, found.group(1)
    proc.kill()
    raise SystemExit("bench_serving: the server did not start")


# ---- main -----------------------------------------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
            "mean": statistics.fmean(values) if values else None}


def measure(args: argparse.Namespace, host: str, port: int, info: dict[str, Any], pid: int | None,
            refine: bool) -> dict[str, Any]:
    """One measured load: the sessions painting (and, with `refine`, one more session refining meanwhile)."""
    size = int(info["model"]["size"])
    masks = painted_masks(size)
    samples: list[Sample] = []
    failures: list[str] = []
    refines: list[RefineRecord] = []
    start = time.perf_counter()
    warm_until = start + args.warmup
    stop_at = warm_until + args.duration
    busy0, total0 = cpu_times()
    load0 = os.getloadavg()
    threads = [
        threading.Thread(target=run_session, daemon=True, args=(
            SessionClient(host, port, i), size, masks, args.mode, args.depth, stop_at, warm_until,
            args.think_ms / 1000, samples, failures))
        for i in range(args.sessions)
    ]
    refiner = None
    if refine:
        steps = args.refine_steps or int(info["limits"]["max_refine_steps"])
        refiner = threading.Thread(target=run_refiner, daemon=True,
                                   args=(host, port, size, steps, stop_at, refines, failures))
        refiner.start()
    for t in threads:
        t.start()
    time.sleep(max(0.0, warm_until - time.perf_counter()))
    busy_w, total_w = cpu_times()
    server_cpu_w = process_cpu_seconds(pid) if pid else None
    for t in threads:
        t.join()
    measured = time.perf_counter() - warm_until
    busy1, total1 = cpu_times()
    server_cpu1 = process_cpu_seconds(pid) if pid else None
    load1 = os.getloadavg()
    if refiner is not None:
        refiner.join(timeout=max(60.0, float(info["limits"]["max_refine_seconds"]) * 2))

    ok = [s for s in samples if s.ok]
    superseded = [s for s in samples if s.status == 409]
    errors = [s for s in samples if not s.ok and s.status != 409]
    cores = os.cpu_count() or 1
    report: dict[str, Any] = {
        "refine_running": refine,
        "duration_s": round(measured, 2), "requests_ok": len(ok), "superseded_409": len(superseded),
        "errors": len(errors) + len(failures), "error_examples": [e.error for e in errors[:3]] + failures[:3],
        "requests_per_s": round(len(ok) / measured, 2) if measured > 0 else None,
        "client_ms": stats([s.client_ms for s in ok]),
        "server_total_ms": stats([s.server_ms for s in ok if s.server_ms is not None]),
        "server_infer_ms": stats([s.infer_ms for s in ok if s.infer_ms is not None]),
        "server_queue_ms": stats([s.queue_ms for s in ok if s.queue_ms is not None]),
        "machine": {
            "cores": cores,
            "cpu_busy_during_run": round((busy1 - busy_w) / max(1e-9, total1 - total_w), 3),
            "cpu_busy_including_warmup": round((busy1 - busy0) / max(1e-9, total1 - total0), 3),
            "loadavg_before": [round(v, 2) for v in load0],
            "loadavg_after": [round(v, 2) for v in load1],
            "server_cpu_cores_used": (round((server_cpu1 - server_cpu_w) / measured, 2)
                                      if server_cpu1 is not None and server_cpu_w is not None else None),
        },
    }
    if refine:
        done = [r for r in refines if r.status == 200]
        report["refines"] = {"completed": len(done), "refused": len(refines) - len(done),
                             "seconds": stats([r.seconds for r in done]),
                             "steps": stats([float(r.steps) for r in done if r.steps is not None])}
    return report


def summary(args: argparse.Namespace, info: dict[str, Any], report: dict[str, Any]) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    size = info["model"]["size"]
    head = "with a refine running" if report["refine_running"] else "no refine"
    text = (
        f"{args.sessions} sessions x {report['duration_s']:.0f} s, {info['model']['name']} {size}px, mode "
        f"{args.mode}, {head}: {report['requests_per_s']} req/s, errors {report['errors']}, superseded "
        f"{report['superseded_409']}\n"
        f"  client round trip p50 {fmt(report['client_ms']['p50'])} / p99 {fmt(report['client_ms']['p99'])} ms\n"
        f"  server total      p50 {fmt(report['server_total_ms']['p50'])} / p99 "
        f"{fmt(report['server_total_ms']['p99'])} ms\n"
        f"  server model      p50 {fmt(report['server_infer_ms']['p50'])} / p99 "
        f"{fmt(report['server_infer_ms']['p99'])} ms (queue p50 {fmt(report['server_queue_ms']['p50'])})\n"
        f"  machine: {report['machine']['cores']} cores, {report['machine']['cpu_busy_during_run'] * 100:.0f}% "
        f"busy, server used {report['machine']['server_cpu_cores_used']} cores, load "
        f"{report['machine']['loadavg_before'][0]} -> {report['machine']['loadavg_after'][0]}"
    )
    if report["refine_running"]:
        r = report["refines"]
        text += (f"\n  refines: {r['completed']} completed (mean {fmt(r['seconds']['mean'])} s, "
                 f"{fmt(r['steps']['mean'])} steps), {r['refused']} refused")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=None, help="a running server (otherwise one is started)")
    p.add_argument("--ckpt", default=None, help="checkpoint for the started server (default: random --preset)")
    p.add_argument("--preset", default="cpu-64", help="random-init preset when no --ckpt (default cpu-64)")
    p.add_argument("--threads", type=int, default=None, help="--threads for the started server")
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of measured load (default 60)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (default 3)")
    p.add_argument("--mode", choices=("w", "w_plus", "mixed"), default="w")
    p.add_argument("--depth", type=int, default=1, help="requests in flight per session (2+: superseding)")
    p.add_argument("--think-ms", type=float, default=0.0, help="pause between a session's requests")
    p.add_argument("--refine", choices=("off", "on", "compare"), default="off",
                   help="one more session refining back to back during the load (on), or measure without and "
                        "then with it (compare)")
    p.add_argument("--refine-steps", type=int, default=None,
                   help="steps per refine (default: the server's max_refine_steps; each also stops at its time "
                        "limit)")
    p.add_argument("--json", default=None, help="write the report here too")
    args = p.parse_args(argv)

    proc = None
    phases = {"off": [False], "on": [True], "compare": [False, True]}[args.refine]
    with tempfile.TemporaryDirectory() as tmp:
        if args.url is None:
            proc, url = start_server(args, Path(tmp))
        else:
            url = args.url
        try:
            parsed = urlparse(url)
            host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("GET", "/api/info")
            info = json.loads(conn.getresponse().read())
            conn.close()
            runs = [measure(args, host, port, info, proc.pid if proc else None, refine) for refine in phases]
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()

    common = {"url": url, "model": info["model"], "sessions": args.sessions, "depth": args.depth,
              "mode": args.mode, "think_ms": args.think_ms}
    report: dict[str, Any] = {**common, **runs[0]} if len(runs) == 1 else {**common, "runs": runs}
    print(json.dumps(report, indent=2))
    for run in runs:
        print("\n" + summary(args, info, run), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(run["errors"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
