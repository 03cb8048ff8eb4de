#!/usr/bin/env python3
"""IPNS record API under load: distinct signed records PUT, then GET back.

Starts a release sidecar cold in a fresh data directory, runs
`sidecar-loadgen ipns` against its HTTP API (64 keep-alive clients by
default; every record its own Ed25519 name, signed before the clock starts),
and prints a table: PUT and GET rates with p50/p99 latency, non-2xx answers,
the sidecar's CPU seconds and peak RSS, and the store's size per record.
Loopback clients are exempt from the write rate limit (the default
`[http] write_rate_exempt`), so the limit does not cap this run.

Targets (IPNS issue): PUT >= 10,000 records/s with 64 concurrent clients,
p99 reported; GET >= 50,000/s.

    cargo build --release -p sidecar -p loadgen
    python3 bench/ipns_http.py [--records 20000] [--clients 64] [--trials 3]
        [--sidecar-cpus 0 --loadgen-cpus 1]

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_vs_kubo import (  # noqa: E402
    BenchError, _kill_all, log, proc_cpu_seconds, proc_status_kib, run, start_run,
)
from quota_load import Sidecar, find_bin, machine_info  # noqa: E402

TARGET_PUT = 10_000
TARGET_GET = 50_000


def trial(sidecar_bin: Path, loadgen: Path, a, workdir: Path, n: int) -> dict:
    data = workdir / f"data-{n}"
    sidecar = Sidecar(sidecar_bin, data, workdir / f"sidecar-{n}.log", a.sidecar_cpus)
    sidecar.start()
    try:
        cpu0 = proc_cpu_seconds(sidecar.pid)
        pin = ["taskset", "-c", a.loadgen_cpus] if a.loadgen_cpus else []
        out = run([*pin, str(loadgen), "ipns", "--target", sidecar.http, "--records",
                   str(a.records), "--clients", str(a.clients), "--get-duration",
                   f"{a.get_seconds}s"], timeout=1800)
        report = json.loads(out)
        report["sidecar_cpu_s"] = proc_cpu_seconds(sidecar.pid) - cpu0
        report["rss_peak_mib"] = proc_status_kib(sidecar.pid, "VmHWM") / 1024
    finally:
        sidecar.stop()
    store = data / "sidecar.redb"
    report["store_bytes_per_record"] = store.stat().st_size / a.records if store.exists() else 0
    log(f"trial {n}: PUT {report['put_per_second']:,.0f}/s (p99 {report['put_p99_ms']:.1f} ms), "
        f"GET {report['get_per_second']:,.0f}/s (p99 {report['get_p99_ms']:.1f} ms), "
        f"errors {report['put_errors']}/{report['get_errors']}, "
        f"sidecar CPU {report['sidecar_cpu_s']:.1f} s, RSS {report['rss_peak_mib']:.0f} MiB")
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--get-seconds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--sidecar-cpus", help="taskset CPU list for the sidecar")
    ap.add_argument("--loadgen-cpus", help="taskset CPU list for the load generator")
    ap.add_argument("--sidecar", help="sidecar binary (default target/release/sidecar)")
    ap.add_argument("--loadgen", help="load generator (default target/release/sidecar-loadgen)")
    a = ap.parse_args()
    start_run()
    sidecar_bin = find_bin("sidecar", a.sidecar)
    loadgen = find_bin("sidecar-loadgen", a.loadgen)
    try:
        with tempfile.TemporaryDirectory(prefix="ipns-http-") as tmp:
            reports = [trial(sidecar_bin, loadgen, a, Path(tmp), n + 1) for n in range(a.trials)]
    except BenchError as e:
        print(f"ipns_http.py: {e}", file=sys.stderr)
        return 1
    finally:
        _kill_all()
    med = lambda k: statistics.median(r[k] for r in reports)  # noqa: E731
    rows = [
        ("PUT records/s (trials)", f"{med('put_per_second'):,.0f} ("
         + ", ".join(f"{r['put_per_second']:,.0f}" for r in reports) + ")",
         f">= {TARGET_PUT:,}: " + ("met" if med("put_per_second") >= TARGET_PUT else "MISSED")),
        ("PUT p50 / p99 ms", f"{med('put_p50_ms'):.2f} / {med('put_p99_ms'):.2f}", "reported"),
        ("GET /s (trials)", f"{med('get_per_second'):,.0f} ("
         + ", ".join(f"{r['get_per_second']:,.0f}" for r in reports) + ")",
         f">= {TARGET_GET:,}: " + ("met" if med("get_per_second") >= TARGET_GET else "MISSED")),
        ("GET p50 / p99 ms", f"{med('get_p50_ms'):.2f} / {med('get_p99_ms'):.2f}", "reported"),
        ("non-2xx answers (PUT / GET)", f"{sum(r['put_errors'] for r in reports)} / "
         f"{sum(r['get_errors'] for r in reports)}", "0"),
        ("sidecar CPU s per trial", f"{med('sidecar_cpu_s'):.1f}", ""),
        ("sidecar peak RSS MiB", f"{med('rss_peak_mib'):.0f}", ""),
        ("store bytes per record", f"{med('store_bytes_per_record'):.0f}", ""),
    ]
    print(f"\n{a.records:,} distinct Ed25519 records, {a.clients} clients, "
          f"{a.get_seconds} s of GETs, {a.trials} trials (median)\n")
    print("| measure | value | target |\n|---|---:|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    print("\nMachine:\n")
    for k, v in machine_info(sidecar_bin):
        print(f"- {k}: {v}")
    print(f"\nCommand: `{' '.join(['bench/ipns_http.py', *sys.argv[1:]])}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
