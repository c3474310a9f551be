#!/usr/bin/python3
"""Generate the synthetic load traces used by `simulate`, its tests and
bench/sched. Deterministic (fixed seed); rerun to regenerate:
    /usr/bin/python3 scheduler/traces/gen_traces.py scheduler/traces
Format: see docs/scheduler.md (t_s,pool,arrivals; one row per interval)."""
import math
import random
import sys

POOL = "fin-research"


def write(path, start, rows, note):
    with open(path, "w") as f:
        f.write(f"# {note}\n# start={start}\nt_s,pool,arrivals\n")
        for t, n in rows:
            f.write(f"{t},{POOL},{n}\n")


def main(out):
    rnd = random.Random(20261129)
    # Steady 10 tasks/s with +-20 % uniform noise per 10 s row, 2 hours.
    rows = [(t, round(100 * (1 + rnd.uniform(-0.2, 0.2)))) for t in range(0, 7200, 10)]
    write(f"{out}/steady_noisy.csv", "2026-11-29T00:00:00Z", rows,
          "steady 10/s +-20% noise, 2 h")
    # Step: 2 tasks/s for 20 minutes, then 12 tasks/s for 40 minutes.
    rows = [(t, 2 if t < 1200 else 12) for t in range(0, 3600, 1)]
    write(f"{out}/step.csv", "2026-11-29T00:00:00Z", rows, "step 2/s -> 12/s at t=1200, 1 h")
    # Bursts: 1 task/s base, a burst of 500 tasks over 20 s every 30 min, 4 h.
    rows = []
    for t in range(0, 4 * 3600, 10):
        n = 10
        if t % 1800 in (600, 610):
            n += 250
        rows.append((t, n))
    write(f"{out}/bursts.csv", "2026-11-29T00:00:00Z", rows,
          "1/s base with 500-task bursts every 30 min, 4 h")
    # Trading day, Asia/Shanghai (UTC+8), Monday 2026-11-30, 24 h from 00:00 local.
    # Overnight 0.3/s; the 09:30 open brings 14/s decaying to 6/s by 10:15;
    # 11:30-13:00 lunch 1/s; afternoon 6/s; after the 15:00 close 1/s.
    rows = []
    for t in range(0, 86400, 10):
        h = t / 3600  # local hours
        if 9.5 <= h < 11.5:
            rate = 6 + 8 * math.exp(-(h - 9.5) * 60 / 15)
        elif 11.5 <= h < 13:
            rate = 1
        elif 13 <= h < 15:
            rate = 6
        elif 15 <= h < 18:
            rate = 1
        else:
            rate = 0.3
        rows.append((t, round(rate * 10 * (1 + rnd.uniform(-0.1, 0.1)))))
    write(f"{out}/trading_day.csv", "2026-11-29T16:00:00Z", rows,
          "Shanghai trading day (09:30 open), 24 h from local midnight")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
