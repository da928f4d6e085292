"""A worker's resident memory across many single messages (issue 15, target 6).

One worker process (the pool and concurrency of ``bench.run``'s options) sends
``--messages`` otp/transactional messages (default 100,000) through PostgreSQL, Redis and
the gateway double, fed in chunks so the queue never runs dry nor holds everything at once.
The worker's resident memory (its whole process tree) is read every second beside the
number of messages sent; the report gives it at every tenth of the run. "Flat" means the
last reading is within 10 % of the reading after the first tenth (the warm-up: pools,
caches and Celery's bounded bookkeeping filling up).

    python -m bench.memory [--messages 100000] [-c 16] [-P threads] [--env KEY=VALUE]

Every option of ``python -m bench.run`` applies (its ``--only`` is ignored).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil

from bench.run import FINAL, Harness, loadavg, log, parse_args

#: messages enqueued at a time, and the backlog below which the next chunk goes in
CHUNK = 5_000
LOW_WATER = 5_000


def rss_of(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0


def sent_count(h: Harness) -> int:
    counts = h.status_counts()
    return sum(counts.get(status, 0) for status in FINAL)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    total = opts.messages if "--messages" in (argv or sys.argv) else 100_000
    concurrency = opts.concurrency[0]
    h = Harness(opts)
    load_start = loadavg()
    try:
        h.setup()
        worker = h.start_worker(f"memory-c{concurrency}", concurrency=concurrency)
        enqueued = 0
        stop = threading.Event()

        def feed() -> None:
            nonlocal enqueued
            while enqueued < total and not stop.is_set():
                if enqueued - sent_count(h) < LOW_WATER:
                    n = min(CHUNK, total - enqueued)
                    h.producer.enqueue_many(
                        [{"phone": f"09{(enqueued + i) % 10**8:08d}", "text": "Ma OTP 123456"}
                         for i in range(n)],
                        kind="otp",
                    )
                    enqueued += n
                else:
                    time.sleep(0.2)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        samples: list[tuple[float, int, int]] = []
        started = time.monotonic()
        last_log = 0.0
        while True:
            sent = sent_count(h)
            samples.append((time.monotonic() - started, sent, rss_of(worker.popen.pid)))
            if worker.popen.poll() is not None:
                raise SystemExit(f"worker exited:\n{worker.tail()}")
            if sent >= total:
                break
            if time.monotonic() - last_log > 15:
                log(f"{sent:,} of {total:,} sent, worker RSS {samples[-1][2] / 2**20:.0f} MiB")
                last_log = time.monotonic()
            if time.monotonic() - started > opts.part_timeout * 10:
                raise SystemExit(f"only {sent:,} of {total:,} sent in time")
            time.sleep(1.0)
        stop.set()
        h.stop_worker(worker)
        report = summarise(samples, total, concurrency, opts.pool, load_start, loadavg())
        (opts.out_dir / "memory.json").write_text(json.dumps(report, indent=2))
        print(render(report))
        return 0 if report["flat"] else 1
    finally:
        h.close()


def summarise(
    samples: list[tuple[float, int, int]], total: int, concurrency: int, pool: str,
    load_start: tuple[float, ...], load_end: tuple[float, ...],
) -> dict[str, Any]:
    marks = []
    for tenth in range(1, 11):
        goal = total * tenth // 10
        at = next(s for s in samples if s[1] >= goal)
        marks.append({"sent": at[1], "seconds": round(at[0], 1), "rss_mib": at[2] / 2**20})
    warm, last = marks[0]["rss_mib"], marks[-1]["rss_mib"]
    growth = (last - warm) / warm
    return {
        "messages": total,
        "pool": pool,
        "concurrency": concurrency,
        "seconds": round(samples[-1][0], 1),
        "rate": total / samples[-1][0],
        "marks": marks,
        "peak_rss_mib": max(s[2] for s in samples) / 2**20,
        "growth_after_warmup": growth,
        "flat": abs(growth) <= 0.10,
        "load_start": load_start,
        "load_end": load_end,
    }


def render(r: dict[str, Any]) -> str:
    lines = [
        f"worker memory over {r['messages']:,} single messages ({r['pool']}, "
        f"c={r['concurrency']}; {r['seconds']:.0f} s, {r['rate']:.0f} msg/s; load "
        f"{' '.join(f'{x:.2f}' for x in r['load_start'])} -> "
        f"{' '.join(f'{x:.2f}' for x in r['load_end'])})",
        "sent      seconds  RSS MiB",
    ]
    lines += [f"{m['sent']:>8,}  {m['seconds']:>7.0f}  {m['rss_mib']:>7.1f}" for m in r["marks"]]
    verdict = "flat (within 10 %)" if r["flat"] else "NOT flat"
    lines.append(f"growth after the first tenth: {100 * r['growth_after_warmup']:+.1f} % — "
                 f"{verdict}; peak {r['peak_rss_mib']:.1f} MiB")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
