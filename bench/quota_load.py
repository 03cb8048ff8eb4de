#!/usr/bin/env python3
"""Quotas under load: 200 honest Bitswap peers, with and without an abusive one.

`sidecar-loadgen run` (loadgen/) runs N honest peers, each its own libp2p
identity and swarm dialling from its own loopback /24, fetching random blocks
of a generated CAR with a window of wants in flight and verifying every block,
plus K abusive peers. This script imports the CAR into a release sidecar once,
then for every scenario and trial starts the sidecar cold with a quota policy
file, runs the load generator against it, and reports honest throughput, the
ratio to the no-abuser baseline, Jain's fairness index, the sidecar's CPU and
peak RSS (VmHWM) and its RSS per connected peer.

Standard library only. See bench/README.md for the method and its caveats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Process handling and /proc readers are shared with the Kubo comparison.
from fetch_vs_kubo import (
    CLK_TCK, _LIVE, BenchError, _kill_all, add_output_args, log, proc_cpu_seconds, proc_status_kib,
    run, spawn,
    start_run, stop, tail, wait_until,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
# Targets from the quota issue's performance section.
TARGET_RATIO = 0.90
TARGET_JAIN = 0.9
# How often the sidecar's VmRSS is sampled during a run, seconds.
RSS_SAMPLE_S = 0.5

# name -> (loadgen arguments for the abusive peers, allowlist the abuser?, what it is)
SCENARIOS: dict[str, tuple[list[str], bool, str]] = {
    "baseline": ([], False, "honest peers only"),
    "flood": (["--abusive", "1", "--abuse", "flood"], False,
              "+1 abuser: want-blocks for absent CIDs as fast as the server reads them "
              "(4 streams, 256 wants/message, cancels every DONT_HAVE'd want)"),
    "flood-allowlisted": (["--abusive", "1", "--abuse", "flood"], True,
                          "the same abuser on the allow list (no quota for it)"),
    "greedy": (["--abusive", "1", "--abuse", "flood", "--abuse-present"], False,
               "+1 abuser: the flood, but for blocks the server holds (a greedy downloader)"),
    "greedy-allowlisted": (["--abusive", "1", "--abuse", "flood", "--abuse-present"], True,
                           "the greedy downloader on the allow list"),
    "wantlist": (["--abusive", "1", "--abuse", "wantlist"], False,
                 "+1 abuser: full wantlists of 100,000 absent CIDs, back to back"),
    "streams": (["--abusive", "1", "--abuse", "streams"], False,
                "+1 abuser: opens streams as fast as it can (64 openers), holds up to 10,000"),
}

# Sidecar metrics kept per trial (series prefix -> short name).
METRICS = {
    'sidecar_bitswap_rejected_total{reason="wantlist_full"}': "rejected_wantlist_full",
    'sidecar_bitswap_rejected_total{reason="too_many_streams"}': "rejected_too_many_streams",
    "sidecar_bitswap_dont_haves_sent_total": "dont_haves_sent",
    "sidecar_bitswap_blocks_sent_total": "blocks_sent",
}


def machine_busy_seconds() -> float:
    """CPU seconds all processes have spent busy (not idle or iowait), all cores."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLK_TCK


# ---------------------------------------------------------------- sidecar

class Sidecar:
    """One data directory; the daemon is started cold for every trial."""

    def __init__(self, bin_: Path, data: Path, log_path: Path, cpus: str | None):
        self.bin, self.data, self.log = bin_, data, log_path
        self.pin = ["taskset", "-c", cpus] if cpus else []
        self.proc: subprocess.Popen | None = None
        self.http: str | None = None

    def env(self) -> dict:
        env = dict(os.environ)
        env["SIDECAR_P2P__LISTEN"] = "/ip4/127.0.0.1/tcp/0"
        env["SIDECAR_HTTP__LISTEN"] = "127.0.0.1:0"
        env.setdefault("SIDECAR_LOG", "warn")
        return env

    def cli(self, *args, timeout: float = 600) -> str:
        return run([str(self.bin), "--data-dir", str(self.data), *args], env=self.env(),
                   timeout=timeout)

    def start(self) -> str:
        addr_file = self.data / "http.addr"
        addr_file.unlink(missing_ok=True)
        self.proc = spawn([*self.pin, str(self.bin), "--data-dir", str(self.data), "run"],
                          env=self.env(), log_path=self.log)

        def ready():
            addr = addr_file.read_text().strip()
            if not addr:
                return None
            with urllib.request.urlopen(f"http://{addr}/healthz", timeout=5) as r:
                self.http = addr
                return json.loads(r.read())

        h = wait_until("sidecar daemon", ready, 60, self.proc, self.log)
        for a in h.get("listen_addrs") or []:
            if a.startswith("/ip4/127.0.0.1/tcp/") and "/ws" not in a:
                return f"{a}/p2p/{h['peer_id']}"
        raise BenchError(f"sidecar: no loopback tcp listen address in /healthz: {h}")

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://{self.http}/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {v: 0.0 for v in METRICS.values()}
        throttled = 0.0
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            series, value = line.rsplit(" ", 1)
            if series in METRICS:
                out[METRICS[series]] = float(value)
            elif series.startswith("sidecar_quota_throttled_wants_total"):
                throttled += float(value)
        out["quota_throttled"] = throttled
        return out

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None


# ---------------------------------------------------------------- one trial

@dataclass
class Trial:
    scenario: str
    trial: int
    load_average: str
    honest: dict
    abusive: list
    errors: list
    sidecar_cpu_s: float
    loadgen_cpu_s: float
    # Everything else the machine ran meanwhile (other users' work, the kernel's
    # own threads): the interference in this trial.
    other_cpu_s: float
    wall_s: float
    rss_idle_kib: int
    rss_peak_kib: int          # VmHWM after the run (start-up included)
    rss_max_sampled_kib: int   # highest VmRSS seen during the run
    rss_end_kib: int
    connected_peers: int
    honest_measured_s: float
    metrics: dict = field(default_factory=dict)

    @property
    def mib_per_sidecar_cpu_s(self) -> float:
        """Honest MiB delivered per sidecar CPU second: the server's efficiency,
        less sensitive than MiB/s to what else the machine runs."""
        measured = self.honest["mib_per_s"] * self.honest_measured_s
        return measured / self.sidecar_cpu_s if self.sidecar_cpu_s else 0.0

    @property
    def rss_per_peer_kib(self) -> float:
        return (self.rss_peak_kib - self.rss_idle_kib) / max(1, self.connected_peers)


# Rates the benchmark puts on every peer (the built-in policy has none): the
# examples the policy file's comments give.
TIER_RATES = {"blocks_per_second": 2000, "blocks_burst": 4000,
              "bytes_per_second": 64 << 20, "bytes_burst": 128 << 20}
PREFIX_RATES = {"blocks_per_second": 20000, "blocks_burst": 40000,
                "bytes_per_second": 256 << 20, "bytes_burst": 512 << 20}


def set_in_section(text: str, section: str, values: dict[str, int]) -> str:
    """Sets `key = value` lines inside `[section]` of a TOML text."""
    head = f"\n[{section}]\n"
    start = text.find(head)
    if start < 0:
        raise BenchError(f"the default policy has no [{section}] section")
    start += len(head)
    end = text.find("\n[", start)
    end = len(text) if end < 0 else end
    body = text[start:end]
    for key, value in values.items():
        body, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", body, count=1)
        if n != 1:
            raise BenchError(f"the default policy has no `{key}` in [{section}]")
    return text[:start] + body + text[end:]


def policy_text(sidecar: Sidecar, allow: list[str]) -> str:
    """The default policy (`sidecar quota init --stdout`) with the benchmark's
    rates on the default tier and the prefix, and `allow` filled in."""
    text = sidecar.cli("quota", "init", "--stdout", timeout=30)
    text = set_in_section(text, "tiers.default", TIER_RATES)
    text = set_in_section(text, "prefix", PREFIX_RATES)
    if allow:
        listed = ", ".join(f'"{p}"' for p in allow)
        if "\nallow = []\n" not in text:
            raise BenchError("the default policy has no `allow = []` line to fill in")
        text = text.replace("\nallow = []\n", f"\nallow = [{listed}]\n", 1)
    return text


def run_trial(sidecar: Sidecar, loadgen: Path, car: Path, scenario: str, trial_no: int,
              a, abuser_ids: list[str], rundir: Path) -> Trial:
    abuse_args, allow, _ = SCENARIOS[scenario]
    (sidecar.data / "quotas.toml").write_text(policy_text(sidecar, abuser_ids if allow else []))
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    target = sidecar.start()
    try:
        pid = sidecar.pid
        time.sleep(1.0)  # let start-up settle before the idle reading
        rss_idle = proc_status_kib(pid, "VmRSS")
        pin = ["taskset", "-c", a.loadgen_cpus] if a.loadgen_cpus else []
        argv = [*pin, str(loadgen), "run", "--target", target, "--car", str(car),
                "--peers", str(a.peers), "--duration", f"{a.duration}s",
                "--warmup", f"{a.warmup}s", "--window", str(a.window),
                "--seed", str(a.seed), *abuse_args, *a.loadgen_arg]
        out_path = rundir / f"{scenario}-{trial_no}.json"
        err_path = rundir / f"{scenario}-{trial_no}.loadgen.log"
        cpu0 = proc_cpu_seconds(pid)
        busy0 = machine_busy_seconds()
        t0 = time.monotonic()
        with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                                 start_new_session=True)
        _LIVE[p.pid] = p
        rss_max = [rss_idle]
        done = threading.Event()

        def sample():
            while not done.wait(RSS_SAMPLE_S):
                try:
                    rss_max[0] = max(rss_max[0], proc_status_kib(pid, "VmRSS"))
                except (OSError, BenchError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        limit = a.duration + a.warmup + 120
        wpid, status, usage = 0, 0, None
        try:
            deadline = time.monotonic() + limit
            while True:
                wpid, status, usage = os.wait4(p.pid, os.WNOHANG)
                if wpid:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"loadgen did not finish within {limit}s")
                time.sleep(0.1)
        finally:
            done.set()
            sampler.join()
            if not wpid:
                stop(p)
            _LIVE.pop(p.pid, None)
        wall = time.monotonic() - t0
        cpu1 = proc_cpu_seconds(pid)
        busy = machine_busy_seconds() - busy0
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise BenchError(f"loadgen exited with {code}: {shlex.join(argv)}\n{tail(err_path)}")
        if sidecar.proc.poll() is not None:
            raise BenchError(f"the sidecar exited during {scenario}\n{tail(sidecar.log)}")
        result = json.loads(out_path.read_text())
        rss_peak = proc_status_kib(pid, "VmHWM")
        rss_end = proc_status_kib(pid, "VmRSS")
        connected = result["honest"]["connected"] + sum(
            1 for x in result["abusive"] if not (x.get("error") or "").startswith("connect"))
        return Trial(
            scenario=scenario, trial=trial_no, load_average=load,
            honest=result["honest"], abusive=result["abusive"], errors=result["errors"],
            sidecar_cpu_s=cpu1 - cpu0, loadgen_cpu_s=usage.ru_utime + usage.ru_stime,
            other_cpu_s=max(0.0, busy - (cpu1 - cpu0) - (usage.ru_utime + usage.ru_stime)),
            wall_s=wall, rss_idle_kib=rss_idle, rss_peak_kib=rss_peak,
            rss_max_sampled_kib=rss_max[0], rss_end_kib=rss_end, connected_peers=connected,
            honest_measured_s=result["measured_s"],
            metrics=sidecar.metrics())
    finally:
        sidecar.stop()


# ---------------------------------------------------------------- report

def machine_info(sidecar: Path) -> list[tuple[str, str]]:
    model = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) // 1024:,} MiB"
    sv = f"{run([str(sidecar), '--version'], timeout=30).strip()} ({sidecar})"
    if "/debug/" in str(sidecar):
        sv += " — DEBUG BUILD, not representative"
    try:
        rev = run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
                  timeout=30).strip()
    except BenchError:
        rev = "?"
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    return [("nproc", str(os.cpu_count())), ("CPU", model), ("memory", mem),
            ("kernel", platform.release()), ("sidecar", sv), ("sidecar tree", rev),
            ("load average at start", load), ("python", platform.python_version())]


def med(xs) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else 0.0


def report(trials: list[Trial], scenarios: list[str], a, car_desc: str, info,
           cmdline: str) -> str:
    ncpu = os.cpu_count() or 1

    def disturbed(t: Trial) -> bool:
        return t.other_cpu_s > a.max_other_cpu * t.wall_s * ncpu

    every = {s: [t for t in trials if t.scenario == s] for s in scenarios}
    # Medians over the undisturbed trials of a scenario (all of them when
    # every trial was disturbed); the table still lists every trial.
    by = {s: [t for t in ts if not disturbed(t)] or ts for s, ts in every.items()}
    base = med(t.honest["mib_per_s"] for t in by.get("baseline", []))
    base_eff = med(t.mib_per_sidecar_cpu_s for t in by.get("baseline", []))
    rows = ["| scenario | honest MiB/s (trials) | blocks/s | ratio vs baseline | Jain | "
            "p50 / p99 ms | honest DONT_HAVE | abuser wants sent / DONT_HAVE recv | "
            "sidecar CPU s | honest MiB per sidecar CPU s | loadgen CPU s | other CPU s | "
            "sidecar RSS idle → peak MiB | RSS per peer KiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    targets = []
    for s in scenarios:
        ts = by[s]
        if not ts:
            continue
        mibs = med(t.honest["mib_per_s"] for t in ts)
        ratio = mibs / base if base else float("nan")
        jain = med(t.honest["jain_index"] for t in ts)
        ab_wants = med(sum(x["wants_sent"] for x in t.abusive) for t in ts)
        ab_dh = med(sum(x["dont_haves_received"] for x in t.abusive) for t in ts)
        ab_bytes = med(sum(x["bytes_received"] for x in t.abusive) for t in ts)
        abuser = "—" if not ts[0].abusive else f"{ab_wants:,.0f} / {ab_dh:,.0f}" + (
            f" (+{ab_bytes / MIB:,.0f} MiB of blocks)" if ab_bytes else "")
        per_trial = ", ".join(f"{t.honest['mib_per_s']:.1f}{'†' if disturbed(t) else ''}"
                              for t in every[s])
        rows.append(
            f"| {s} | {mibs:,.1f} ({per_trial}) "
            f"| {med(t.honest['blocks_per_s'] for t in ts):,.0f} "
            f"| {'baseline' if s == 'baseline' else f'{ratio:.3f}'} | {jain:.4f} "
            f"| {med(t.honest['latency']['p50_ms'] for t in ts):.0f} / "
            f"{med(t.honest['latency']['p99_ms'] for t in ts):.0f} "
            f"| {med(t.honest['dont_haves'] for t in ts):,.0f} | {abuser} "
            f"| {med(t.sidecar_cpu_s for t in ts):.1f} "
            f"| {med(t.mib_per_sidecar_cpu_s for t in ts):.1f} "
            f"| {med(t.loadgen_cpu_s for t in ts):.1f} | {med(t.other_cpu_s for t in ts):.1f} "
            f"| {med(t.rss_idle_kib for t in ts) / 1024:.0f} → "
            f"{med(t.rss_peak_kib for t in ts) / 1024:.0f} "
            f"| {med(t.rss_per_peer_kib for t in ts):.0f} |")
        if s != "baseline" and base and not s.endswith("allowlisted"):
            eff = med(t.mib_per_sidecar_cpu_s for t in ts) / base_eff if base_eff else 0.0
            targets.append(f"- {s}: honest throughput ×{ratio:.3f} of baseline (target ≥ "
                           f"{TARGET_RATIO}) {'met' if ratio >= TARGET_RATIO else 'MISSED'}; "
                           f"honest MiB per sidecar CPU second ×{eff:.3f} of baseline")
        targets.append(f"- {s}: Jain's index {jain:.4f} (target ≥ {TARGET_JAIN}) "
                       f"{'met' if jain >= TARGET_JAIN else 'MISSED'}")
    notes = []
    for s in scenarios:
        for t in every[s]:
            m = t.metrics
            notes.append(
                f"- {s} trial {t.trial}{' † disturbed' if disturbed(t) else ''} (load "
                f"{t.load_average}): sidecar sent "
                f"{m.get('blocks_sent', 0):,.0f} blocks and {m.get('dont_haves_sent', 0):,.0f} "
                f"DONT_HAVEs, throttled {m.get('quota_throttled', 0):,.0f} wants, rejected "
                f"{m.get('rejected_wantlist_full', 0):,.0f} wants over the wantlist cap and "
                f"{m.get('rejected_too_many_streams', 0):,.0f} streams over the stream cap; "
                f"other CPU {t.other_cpu_s:.1f}s; "
                f"honest timeouts {t.honest['timeouts']}, want streams reopened "
                f"{t.honest['stream_reopens']}, unverified blocks {t.honest['unverified']}, "
                f"peers connected {t.connected_peers}, in-run max VmRSS "
                f"{t.rss_max_sampled_kib / 1024:.0f} MiB"
                + (f"; errors: {len(t.errors)} (first: {t.errors[0]})" if t.errors else ""))
    out = [f"### Quotas under load ({time.strftime('%Y-%m-%d %H:%M %Z')})", ""]
    out += rows
    out += ["", f"Medians over the undisturbed trials of each scenario (of {a.trials}; a "
            f"trial marked † had other CPU above {a.max_other_cpu:.0%} of the machine's "
            "core-seconds and only counts when all of its scenario's trials did), "
            f"{a.peers} honest peers, "
            f"window {a.window} wants each, {a.warmup}s warm-up then {a.duration}s measured. "
            "Honest MiB/s = verified block bytes received by all honest peers in the measured "
            "window / its length. Jain = Jain's fairness index over the honest peers' bytes. "
            "Sidecar CPU s = utime+stime of the sidecar over the whole load-generator run "
            "(connect, warm-up, measurement, teardown); honest MiB per sidecar CPU s = the "
            "measured honest bytes / that CPU time (it moves less with outside load than MiB/s "
            "does); loadgen CPU s the same for the load generator; other CPU s = busy time of "
            "everything else on the machine over the same run (/proc/stat), i.e. interference. "
            "RSS idle = VmRSS after start-up; peak "
            "= VmHWM after the run; per peer = (peak − idle) / connected peers.", ""]
    if a.sidecar_cpus or a.loadgen_cpus:
        out += [f"CPU pinning: sidecar on CPUs {a.sidecar_cpus or 'any'}, load generator on "
                f"CPUs {a.loadgen_cpus or 'any'} (taskset).", ""]
    out += ["Scenarios:", ""] + [f"- {s}: {SCENARIOS[s][2]}" for s in scenarios] + [""]
    out += ["Targets:", ""] + targets + [""]
    out += ["Per trial:", ""] + notes + [""]
    out += [f"CAR: {car_desc}", "", "Machine:", ""] + [f"- {k}: {v}" for k, v in info]
    out += ["", f"Command: `{cmdline}`", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- main

def find_bin(name: str, explicit: str | None) -> Path:
    p = Path(explicit or REPO_ROOT / "target/release" / name)
    if not p.is_absolute():
        p = Path.cwd() / p
    if not p.exists():
        raise BenchError(f"{p} not found (build with `cargo build --release -p sidecar -p "
                         "loadgen`, or pass --build)")
    return p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--workdir", default=str(Path.home() / ".cache/sidecar/bench"),
                    help="cache for the generated CAR; run directories go under it too")
    ap.add_argument("--blocks", type=int, default=16384, help="blocks in the CAR")
    ap.add_argument("--block-size", type=int, default=16384, help="bytes per block")
    ap.add_argument("--seed", type=int, default=1, help="CAR contents, block choice, abuser IDs")
    ap.add_argument("--peers", type=int, default=200, help="honest peers")
    ap.add_argument("--window", type=int, default=32, help="wants in flight per honest peer")
    ap.add_argument("--duration", type=int, default=20, help="measured seconds")
    ap.add_argument("--warmup", type=int, default=2, help="seconds not counted after the start")
    ap.add_argument("--trials", type=int, default=3, help="trials per scenario")
    ap.add_argument("--scenarios", default="baseline,flood,flood-allowlisted",
                    help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    ap.add_argument("--loadgen-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for `sidecar-loadgen run` (repeatable)")
    ap.add_argument("--max-other-cpu", type=float, default=0.05,
                    help="a trial where everything but the sidecar and the load generator used "
                         "more than this fraction of the machine's core-seconds is disturbed: "
                         "listed, but left out of the medians")
    ap.add_argument("--sidecar-cpus", metavar="LIST",
                    help="pin the sidecar to these CPUs (taskset -c LIST); default: unpinned")
    ap.add_argument("--loadgen-cpus", metavar="LIST",
                    help="pin the load generator to these CPUs (taskset -c LIST)")
    ap.add_argument("--sidecar-bin", help="default: target/release/sidecar")
    ap.add_argument("--loadgen-bin", help="default: target/release/sidecar-loadgen")
    ap.add_argument("--build", action="store_true",
                    help="run `cargo build --release -p sidecar -p loadgen` first")
    add_output_args(ap, "keep the run directory")
    a = ap.parse_args()
    cmdline = start_run()
    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or not scenarios:
        raise BenchError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    if a.trials < 1 or a.peers < 1:
        raise BenchError("--trials and --peers must be at least 1")
    if a.build:
        log("building (cargo build --release -p sidecar -p loadgen)")
        run(["cargo", "build", "--release", "-p", "sidecar", "-p", "loadgen"], cwd=REPO_ROOT,
            timeout=7200)
    sidecar_bin = find_bin("sidecar", a.sidecar_bin)
    loadgen = find_bin("sidecar-loadgen", a.loadgen_bin)
    info = machine_info(sidecar_bin)
    load = dict(info)["load average at start"]
    if float(load.split()[0]) > 0.5 * (os.cpu_count() or 1):
        log(f"WARNING: load average {load}: the machine is not quiet, numbers will be noisy")

    workdir = Path(a.workdir).expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    car = workdir / f"quota-{a.blocks}x{a.block_size}-s{a.seed}.car"
    if car.exists():
        log(f"reusing {car}")
    else:
        log(f"generating {car}")
        run([str(loadgen), "gen-car", "--blocks", str(a.blocks), "--size", str(a.block_size),
             "--seed", str(a.seed), "--out", str(car)], timeout=3600)
    car_desc = (f"{a.blocks:,} raw blocks of {a.block_size:,} B seeded random bytes (seed "
                f"{a.seed}), CIDv1 raw sha2-256, {a.blocks * a.block_size / MIB:,.0f} MiB "
                f"(`sidecar-loadgen gen-car`)")
    abuser_ids = json.loads(run([str(loadgen), "abusive-ids", "--seed", str(a.seed),
                                 "--count", "1"], timeout=30))

    rundir = Path(tempfile.mkdtemp(prefix=f"quota-{time.strftime('%Y%m%d-%H%M%S')}-",
                                   dir=workdir))
    log(f"run directory {rundir}")
    sidecar = Sidecar(sidecar_bin, rundir / "data", rundir / "sidecar.log", a.sidecar_cpus)
    trials: list[Trial] = []
    ok = False
    try:
        sidecar.data.mkdir()
        log(f"importing {car.name} (not measured)")
        sidecar.cli("car", "import", str(car), timeout=3600)
        for i in range(1, a.trials + 1):
            # Alternate the order between trials so drift hurts every scenario alike.
            for s in (scenarios if i % 2 else list(reversed(scenarios))):
                t = run_trial(sidecar, loadgen, car, s, i, a, abuser_ids, rundir)
                trials.append(t)
                ab = t.abusive[0] if t.abusive else None
                log(f"{s} trial {i}: honest {t.honest['mib_per_s']:.1f} MiB/s "
                    f"({t.honest['blocks_per_s']:,.0f} blocks/s), Jain "
                    f"{t.honest['jain_index']:.4f}, connected {t.connected_peers}, sidecar CPU "
                    f"{t.sidecar_cpu_s:.1f}s, loadgen CPU {t.loadgen_cpu_s:.1f}s, other CPU "
                    f"{t.other_cpu_s:.1f}s, RSS "
                    f"{t.rss_idle_kib / 1024:.0f} -> {t.rss_peak_kib / 1024:.0f} MiB"
                    + (f", abuser sent {ab['wants_sent']:,} wants, got "
                       f"{ab['dont_haves_received']:,} DONT_HAVEs, "
                       f"{ab['bytes_received'] / MIB:,.0f} MiB" if ab else "")
                    + (f", {len(t.errors)} errors (first: {t.errors[0]})" if t.errors else ""))
        ok = True
    finally:
        _kill_all()
        if a.keep or not ok:
            log(f"run directory kept: {rundir}")
        else:
            shutil.rmtree(rundir, ignore_errors=True)

    md = report(trials, scenarios, a, car_desc, info, cmdline)
    print(md)
    if a.markdown_out:
        with open(a.markdown_out, "a") as f:
            f.write(md + "\n")
        log(f"appended the report to {a.markdown_out}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(
            {"command": cmdline, "machine": dict(info), "car": car_desc,
             "trials": [{**t.__dict__, "rss_per_peer_kib": t.rss_per_peer_kib,
                         "mib_per_sidecar_cpu_s": t.mib_per_sidecar_cpu_s}
                        for t in trials]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"quota_load: error: {e}", file=sys.stderr)
        sys.exit(1)
