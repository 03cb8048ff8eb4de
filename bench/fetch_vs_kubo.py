#!/usr/bin/env python3
"""Bitswap serving benchmark: the sidecar vs a Kubo daemon, same run, same DAG.

A fresh client Kubo fetches a whole DAG over loopback Bitswap (`ipfs pin add`)
from one server at a time: the sidecar (with the CAR indexed by `sidecar car
import`) or a second Kubo daemon (with the CAR imported by `ipfs dag import`).
Both servers import before any measurement and are restarted cold for every
trial; only the fetch is timed. Server CPU (utime+stime) and peak RSS (VmHWM)
come from /proc. The client's block count is checked against the CAR's.

Standard library only. See bench/README.md for the method and its caveats.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
GIB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Bump when the way the DAGs are produced changes, so cached CARs are rebuilt.
DAG_FORMAT = 1


class BenchError(Exception):
    """A failure with a message meant for the operator."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

_LIVE: dict[int, subprocess.Popen] = {}


def spawn(argv, *, env=None, log_path: Path | None = None, cwd=None) -> subprocess.Popen:
    """Starts a long-running process in its own process group."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        p = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    finally:
        if log_path:
            out.close()
    _LIVE[p.pid] = p
    return p


def stop(p: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM to the process group, then SIGKILL if it lingers."""
    if p is None:
        return
    _LIVE.pop(p.pid, None)
    if p.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _kill_all() -> None:
    for p in list(_LIVE.values()):
        stop(p, timeout=5.0)


atexit.register(_kill_all)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)



def add_output_args(ap: argparse.ArgumentParser, keep_help: str) -> None:
    """The report and run-directory options every bench script shares."""
    ap.add_argument("--markdown-out", help="append the markdown report to this file")
    ap.add_argument("--json-out", help="write every trial's raw numbers to this file")
    ap.add_argument("--keep", action="store_true", help=keep_help)


def start_run() -> str:
    """Installs the signal handlers that kill started processes; returns the
    command line as it should be quoted in the report."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return shlex.join([os.path.relpath(sys.argv[0]) if os.path.exists(sys.argv[0])
                       else sys.argv[0], *sys.argv[1:]])

def run(argv, *, env=None, timeout: float, input_bytes=None, cwd=None) -> str:
    """Runs a short command; raises BenchError with its output on failure."""
    try:
        r = subprocess.run(argv, env=env, cwd=cwd, input=input_bytes, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:.0f}s: {shlex.join(map(str, argv))}")
    if r.returncode != 0:
        raise BenchError(
            f"exit {r.returncode}: {shlex.join(map(str, argv))}\n"
            f"{r.stderr.decode(errors='replace')[-3000:]}{r.stdout.decode(errors='replace')[-1000:]}")
    return r.stdout.decode()


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def wait_until(what: str, fn, timeout: float, proc: subprocess.Popen | None = None,
               log_path: Path | None = None):
    """Polls fn() until it returns a truthy value; fails early if proc exits."""
    deadline = time.monotonic() + timeout
    last_err = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what}: process exited with {proc.returncode}\n"
                             f"{tail(log_path) if log_path else ''}")
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - polling, keep the last error for the report
            last_err = e
        time.sleep(0.1)
    raise BenchError(f"{what}: not ready after {timeout:.0f}s (last error: {last_err})\n"
                     f"{tail(log_path) if log_path else ''}")


# ---------------------------------------------------------------- /proc metrics

def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of all threads of pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime=14, stime=15


def proc_status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"{key} not in /proc/{pid}/status")


# ---------------------------------------------------------------- CAR reading

def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    x = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        x |= (b & 0x7F) << shift
        if b < 0x80:
            return x, pos
        shift += 7


def _read_uvarint(f) -> int | None:
    x = shift = 0
    while True:
        c = f.read(1)
        if not c:
            if shift == 0:
                return None
            raise BenchError("truncated varint in CAR")
        b = c[0]
        x |= (b & 0x7F) << shift
        if b < 0x80:
            return x
        shift += 7


def car_stats(path: Path) -> dict:
    """Block count, total block bytes and largest block of a CARv1 file."""
    blocks = total = largest = 0
    with open(path, "rb") as f:
        hlen = _read_uvarint(f)
        f.seek(hlen, os.SEEK_CUR)
        while True:
            slen = _read_uvarint(f)
            if slen is None:
                break
            head = f.read(min(slen, 128))
            if head[:2] == b"\x12\x20":  # CIDv0: bare sha2-256 multihash
                cid_len = 34
            else:
                _, p = _uvarint(head, 0)   # version
                _, p = _uvarint(head, p)   # codec
                _, p = _uvarint(head, p)   # multihash code
                dlen, p = _uvarint(head, p)
                cid_len = p + dlen
            size = slen - cid_len
            blocks += 1
            total += size
            largest = max(largest, size)
            f.seek(slen - len(head), os.SEEK_CUR)
    return {"blocks": blocks, "block_bytes": total, "largest_block": largest}


# ---------------------------------------------------------------- Kubo

def kubo_env(repo: Path) -> dict:
    env = dict(os.environ)
    env["IPFS_PATH"] = str(repo)
    env["IPFS_TELEMETRY"] = "off"
    env.pop("IPFS_HTTP_ROUTERS", None)
    return env


class KuboNode:
    """One Kubo repo; the daemon can be started and stopped repeatedly."""

    def __init__(self, bin_: Path, repo: Path, name: str, logdir: Path, profiles: str = ""):
        self.bin, self.repo, self.name = bin_, repo, name
        self.profiles = ",".join(["test", *[p for p in profiles.split(",") if p]])
        self.log = logdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.api: str | None = None

    def cli(self, *args, timeout: float = 120, input_bytes=None) -> str:
        return run([str(self.bin), *args], env=kubo_env(self.repo), timeout=timeout,
                   input_bytes=input_bytes)

    def init(self) -> None:
        self.repo.mkdir(parents=True, exist_ok=True)
        self.cli("init", f"--profile={self.profiles}", "--empty-repo", timeout=60)
        # Same settings on every node, client and server: nothing but the one
        # swarm connection we make ourselves.
        self.cli("config", "Routing.Type", "none")
        self.cli("config", "--json", "Provide.Enabled", "false")
        self.cli("config", "--json", "Plugins.Plugins",
                 '{"telemetry": {"Disabled": true}}')

    def start(self, timeout: float = 60) -> None:
        (self.repo / "api").unlink(missing_ok=True)
        self.proc = spawn([str(self.bin), "daemon"], env=kubo_env(self.repo),
                          log_path=self.log)

        def ready():
            api = (self.repo / "api").read_text().strip()
            parts = api.split("/")  # /ip4/127.0.0.1/tcp/PORT
            self.api = f"http://{parts[2]}:{parts[4]}"
            return self.rpc("id", timeout=5)

        self.ident = wait_until(f"kubo {self.name} daemon", ready, timeout, self.proc, self.log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def swarm_addr(self) -> str:
        for a in self.ident.get("Addresses") or []:
            if a.startswith("/ip4/127.0.0.1/tcp/") and "/ws" not in a:
                return a if "/p2p/" in a else f"{a}/p2p/{self.ident['ID']}"
        raise BenchError(f"kubo {self.name}: no loopback tcp address in {self.ident}")

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None

    def _url(self, cmd: str, args=(), **opts) -> str:
        q = [("arg", a) for a in args] + [(k, str(v).lower() if isinstance(v, bool) else str(v))
                                         for k, v in opts.items()]
        return f"{self.api}/api/v0/{cmd}?{urllib.parse.urlencode(q)}"

    def rpc(self, cmd: str, *args, timeout: float = 60, **opts):
        req = urllib.request.Request(self._url(cmd, args, **opts), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            raise BenchError(f"kubo {self.name} {cmd}: HTTP {e.code}: "
                             f"{e.read().decode(errors='replace')[:500]}")
        return json.loads(body) if body.strip() else None

    def rpc_stream(self, cmd: str, *args, stall: float, deadline: float, **opts) -> list:
        """NDJSON streaming call; fails if no line arrives for `stall` seconds or the
        whole call passes the monotonic `deadline`."""
        req = urllib.request.Request(self._url(cmd, args, **opts), method="POST")
        out = []
        # Kubo repeats the same progress line every 500 ms while a fetch is
        # stuck, so a stall is "no new line content", not "no bytes".
        last, last_change = None, time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=stall) as r:
                for line in r:
                    now = time.monotonic()
                    if line.strip():
                        out.append(json.loads(line))
                        if line != last:
                            last, last_change = line, now
                    if now - last_change > stall:
                        raise BenchError(f"kubo {self.name} {cmd}: stalled, no progress for "
                                         f"{stall:.0f}s (last: {last!r})")
                    if now > deadline:
                        raise BenchError(f"kubo {self.name} {cmd}: overall timeout")
                err = r.headers.get("X-Stream-Error")
                if err:
                    raise BenchError(f"kubo {self.name} {cmd}: {err}")
        except urllib.error.HTTPError as e:
            raise BenchError(f"kubo {self.name} {cmd}: HTTP {e.code}: "
                             f"{e.read().decode(errors='replace')[:500]}")
        except TimeoutError:
            raise BenchError(f"kubo {self.name} {cmd}: no progress for {stall:.0f}s")
        for o in out:
            if isinstance(o, dict) and o.get("Type") == "error":
                raise BenchError(f"kubo {self.name} {cmd}: {o.get('Message')}")
        return out


# ---------------------------------------------------------------- servers

class KuboServer:
    kind = "kubo"

    def __init__(self, label: str, bin_: Path, rundir: Path):
        self.label = label
        self.node = KuboNode(bin_, rundir / f"server-{label}", f"server-{label}", rundir)

    def prepare(self, car: Path, timeout: float) -> None:
        self.node.init()
        # Offline import (no daemon): the daemon we measure starts cold afterwards.
        self.node.cli("dag", "import", "--stats", str(car), timeout=timeout)

    def start(self) -> str:
        self.node.start()
        return self.node.swarm_addr()

    @property
    def pid(self) -> int:
        return self.node.pid

    def alive(self) -> bool:
        return self.node.proc is not None and self.node.proc.poll() is None

    def stop(self) -> None:
        self.node.stop()


class SidecarServer:
    kind = "sidecar"

    def __init__(self, label: str, bin_: Path, rundir: Path, sets: list[str]):
        self.label, self.bin = label, bin_
        self.sets = [x for kv in sets for x in ("--set", kv)]
        self.data = rundir / f"server-{label}"
        self.log = rundir / f"server-{label}.log"
        self.proc: subprocess.Popen | None = None

    def _env(self) -> dict:
        env = dict(os.environ)
        env["SIDECAR_P2P__LISTEN"] = "/ip4/127.0.0.1/tcp/0"
        env["SIDECAR_HTTP__LISTEN"] = "127.0.0.1:0"
        env.setdefault("RUST_LOG", "warn")
        return env

    def prepare(self, car: Path, timeout: float) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        run([str(self.bin), "--data-dir", str(self.data), *self.sets, "car", "import", str(car)],
            env=self._env(), timeout=timeout)

    def start(self) -> str:
        addr_file = self.data / "http.addr"
        addr_file.unlink(missing_ok=True)
        self.proc = spawn([str(self.bin), "--data-dir", str(self.data), *self.sets, "run"],
                          env=self._env(), log_path=self.log)

        def ready():
            addr = addr_file.read_text().strip()
            if not addr:
                return None
            with urllib.request.urlopen(f"http://{addr}/healthz", timeout=5) as r:
                return json.loads(r.read())

        h = wait_until("sidecar daemon", ready, 60, self.proc, self.log)
        for a in h.get("listen_addrs") or []:
            if a.startswith("/ip4/127.0.0.1/tcp/") and "/ws" not in a:
                return f"{a}/p2p/{h['peer_id']}"
        raise BenchError(f"sidecar: no loopback tcp listen address in /healthz: {h}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None


# ---------------------------------------------------------------- DAGs

@dataclass
class Dag:
    name: str
    car: Path
    root: str
    blocks: int
    block_bytes: int
    largest_block: int
    recipe: str


def make_dag(kubo: Path, workdir: Path, name: str, file_bytes: int, chunk: int,
             max_links: int | None, seed: int) -> Dag:
    """Builds (or reuses) a CAR of one file of seeded random bytes."""
    add_args = ["add", "-Q", "--pin=false", "--cid-version=1", "--raw-leaves",
                f"--chunker=size-{chunk}"]
    if max_links:
        add_args.append(f"--max-file-links={max_links}")
    key = f"{name}-{file_bytes}B-c{chunk}-l{max_links or 'default'}-s{seed}-v{DAG_FORMAT}"
    car, meta_path = workdir / f"{key}.car", workdir / f"{key}.json"
    recipe = (f"one file of {file_bytes / MIB:g} MiB seeded random bytes (seed {seed}), "
              f"`ipfs add {' '.join(add_args[3:])}`")
    if car.exists() and meta_path.exists():
        m = json.loads(meta_path.read_text())
        log(f"{name} DAG: reusing {car}")
        return Dag(name, car, m["root"], m["blocks"], m["block_bytes"], m["largest_block"], recipe)

    log(f"{name} DAG: generating {file_bytes / MIB:g} MiB, chunk {chunk} B -> {car}")
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="producer-", dir=workdir) as tmp:
        repo = Path(tmp) / "repo"
        producer = KuboNode(kubo, repo, f"producer-{name}", Path(tmp))
        producer.init()
        env = kubo_env(repo)
        # Stream the bytes into `ipfs add` (offline: no daemon) instead of
        # writing a temporary file of the same size.
        out_path, err_path = Path(tmp) / "add.out", Path(tmp) / "add.err"
        with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
            p = subprocess.Popen([str(kubo), *add_args], env=env, stdin=subprocess.PIPE,
                                 stdout=fo, stderr=fe, start_new_session=True)
        _LIVE[p.pid] = p
        try:
            rng = random.Random(seed)
            left = file_bytes
            try:
                while left:
                    n = min(left, 4 * MIB)
                    p.stdin.write(rng.randbytes(n))
                    left -= n
            except BrokenPipeError:
                pass  # reported below through the exit status
            p.stdin.close()
            p.wait(timeout=3600)
        finally:
            stop(p)
        if p.returncode != 0 or left:
            raise BenchError(f"ipfs add failed (exit {p.returncode}): {tail(err_path)}")
        root = out_path.read_text().strip()
        tmp_car = car.with_suffix(".car.tmp")
        with open(tmp_car, "wb") as f:
            r = subprocess.run([str(kubo), "dag", "export", root], env=env, stdout=f,
                               stderr=subprocess.PIPE, timeout=3600)
        if r.returncode != 0:
            raise BenchError(f"ipfs dag export failed: {r.stderr.decode(errors='replace')}")
        tmp_car.rename(car)
    st = car_stats(car)
    meta = {"root": root, **st, "file_bytes": file_bytes, "chunk": chunk,
            "max_links": max_links, "seed": seed, "add_args": add_args}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    log(f"{name} DAG: root {root}, {st['blocks']} blocks, {st['block_bytes']} B, "
        f"largest block {st['largest_block']} B")
    return Dag(name, car, root, st["blocks"], st["block_bytes"], st["largest_block"], recipe)


# ---------------------------------------------------------------- one trial

@dataclass
class Trial:
    dag: str
    server: str
    trial: int
    wall_s: float
    server_cpu_s: float
    server_rss_kib: int
    server_rss_before_kib: int
    client_cpu_s: float
    blocks_fetched: int  # per client
    clients: int


# How the client fetches the DAG: RPC command and options. `pin` is the default
# (see README: it walks the DAG with 32 concurrent fetchers in one session).
FETCH = {
    "pin": ("pin/add", {"progress": True}, "ipfs pin add --progress <root>"),
    "dag-stat": ("dag/stat", {"progress": True}, "ipfs dag stat --progress <root>"),
    "refs": ("refs", {"recursive": True, "unique": True}, "ipfs refs -r --unique <root>"),
}


def run_trial(kubo: Path, server, dag: Dag, trial_no: int, rundir: Path,
              fetch_timeout: float, fetch: str, client_root: Path | None,
              client_profile: str, n_clients: int, stall: float) -> Trial:
    clients = []
    for c in range(n_clients):
        name = f"client-{dag.name}-{server.label}-{trial_no}-{c}"
        clients.append(KuboNode(kubo, (client_root or rundir) / name, name, rundir,
                                client_profile))
    try:
        for client in clients:
            client.init()
            client.start()
        addr = server.start()
        spid = server.pid
        for client in clients:
            client.rpc("swarm/connect", addr, timeout=30)
        time.sleep(0.5)  # let identify finish on both sides before the clock starts
        rss_before = proc_status_kib(spid, "VmRSS")
        cpu0 = proc_cpu_seconds(spid)
        ccpu0 = sum(proc_cpu_seconds(c.pid) for c in clients)
        cmd, opts, _ = FETCH[fetch]
        errors: list[BaseException] = []
        t0 = time.monotonic()

        def fetch_one(client):
            try:
                client.rpc_stream(cmd, dag.root, stall=stall, deadline=t0 + fetch_timeout, **opts)
            except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
                errors.append(e)

        if n_clients == 1:
            fetch_one(clients[0])
        else:  # all clients fetch at once; the clock stops when the last one is done
            threads = [threading.Thread(target=fetch_one, args=(c,), daemon=True)
                       for c in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join(max(1.0, t0 + fetch_timeout + 60 - time.monotonic()))
            if any(t.is_alive() for t in threads):
                errors.append(BenchError("a client fetch did not finish in time"))
        wall = time.monotonic() - t0
        if errors:
            raise errors[0]
        cpu1 = proc_cpu_seconds(spid)
        ccpu1 = sum(proc_cpu_seconds(c.pid) for c in clients)
        rss_peak = proc_status_kib(spid, "VmHWM")
        if not server.alive():
            raise BenchError(f"{server.label} exited during the fetch")
        # Correctness: every client now holds the whole DAG, offline.
        for client in clients:
            st = client.rpc("dag/stat", dag.root, offline=True, progress=False, timeout=600)
            got = st["DagStats"][0]["NumBlocks"] if st.get("DagStats") else st.get("UniqueBlocks")
            if got != dag.blocks:
                raise BenchError(f"{dag.name} from {server.label}: {client.name} has {got} "
                                 f"blocks, CAR has {dag.blocks}")
        return Trial(dag.name, server.label, trial_no, wall, cpu1 - cpu0, rss_peak,
                     rss_before, ccpu1 - ccpu0, got, n_clients)
    finally:
        server.stop()
        for client in clients:
            client.stop()
            shutil.rmtree(client.repo, ignore_errors=True)


# ---------------------------------------------------------------- report

def machine_info(kubo: Path, sidecar: Path | None) -> list[tuple[str, str]]:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        mem = f"{proc_meminfo_mib():,} MiB"
    except Exception:  # noqa: BLE001
        pass
    kv = run([str(kubo), "version"], timeout=30).strip()
    if sidecar:
        try:
            sv = f"{run([str(sidecar), '--version'], timeout=30).strip()} ({sidecar})"
            if "/debug/" in str(sidecar):
                sv += " — DEBUG BUILD, not representative"
        except BenchError as e:
            sv = f"? ({e})".splitlines()[0]
    else:
        sv = "(not used)"
    try:
        rev = run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"], timeout=30).strip()
    except BenchError:
        rev = "?"
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    return [("nproc", str(os.cpu_count())), ("CPU", model), ("memory", mem),
            ("kernel", platform.release()), ("Kubo", kv), ("sidecar", sv),
            ("sidecar tree", rev), ("load average at start", load),
            ("python", platform.python_version())]


def proc_meminfo_mib() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ValueError


def fmt(x: float, nd: int = 2) -> str:
    return f"{x:,.{nd}f}"


def report(trials: list[Trial], dags: dict[str, Dag], servers: list, baseline: str,
           info, cmdline: str, fetch_cmd: str, n_clients: int) -> str:
    lines = ["| dag | server | wall s | MiB/s | server CPU s | CPU s/GiB | server peak RSS MiB "
             "| client CPU s | ratio vs Kubo |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    summary: dict[tuple[str, str], dict] = {}
    for dname, dag in dags.items():
        for s in servers:
            ts = [t for t in trials if t.dag == dname and t.server == s.label]
            if not ts:
                continue
            wall = statistics.median(t.wall_s for t in ts)
            cpu = statistics.median(t.server_cpu_s for t in ts)
            rss = statistics.median(t.server_rss_kib for t in ts) / 1024
            ccpu = statistics.median(t.client_cpu_s for t in ts)
            served = ts[0].clients * dag.block_bytes
            summary[(dname, s.label)] = dict(
                wall=wall, mibs=served / MIB / wall, cpu=cpu, cpu_gib=cpu / (served / GIB),
                rss=rss, ccpu=ccpu, walls=[t.wall_s for t in ts])
    targets = []
    for dname, dag in dags.items():
        base = summary.get((dname, baseline))
        for s in servers:
            m = summary.get((dname, s.label))
            if m is None:
                continue
            if s.label == baseline or base is None:
                ratio = "baseline" if s.label == baseline else "—"
            else:
                tp, cp, rp = m["mibs"] / base["mibs"], m["cpu_gib"] / base["cpu_gib"] \
                    if base["cpu_gib"] else float("inf"), m["rss"] / base["rss"]
                ratio = f"MiB/s ×{tp:.3f}, CPU/GiB ×{cp:.3f}, RSS ×{rp:.3f}"
                want_tp = 1.0 if dname == "large" else 1.5
                targets.append(
                    f"- {dname}, {s.label}: throughput ×{tp:.3f} (target ≥ {want_tp:g}) "
                    f"{'PASS' if tp >= want_tp else 'FAIL'}; CPU/GiB ×{cp:.3f} (target ≤ 0.5) "
                    f"{'PASS' if cp <= 0.5 else 'FAIL'}; peak RSS ×{rp:.3f} (target ≤ 0.5) "
                    f"{'PASS' if rp <= 0.5 else 'FAIL'}")
            walls = ", ".join(fmt(w) for w in m["walls"])
            lines.append(
                f"| {dname} | {s.label} | {fmt(m['wall'])} ({walls}) | {fmt(m['mibs'], 1)} "
                f"| {fmt(m['cpu'])} | {fmt(m['cpu_gib'])} | {fmt(m['rss'], 1)} "
                f"| {fmt(m['ccpu'])} | {ratio} |")
    out = [f"### Bitswap fetch: sidecar vs Kubo ({time.strftime('%Y-%m-%d %H:%M %Z')})", ""]
    out += lines
    out += ["", "Medians over trials (wall s lists every trial). Server CPU = utime+stime of the "
            "server process over the fetch; peak RSS = server VmHWM after the fetch (server "
            "started cold for each trial, data already imported). MiB/s = DAG block bytes "
            f"{f'× {n_clients} clients ' if n_clients > 1 else ''}/ client wall time of "
            f"`{fetch_cmd}`"
            f"{f', all {n_clients} clients fetching at once until the last finishes' if n_clients > 1 else ''}"
            ". Client CPU s: the client Kubo(s) over the same window; when it nears "
            "the wall time the client sets the pace.", ""]
    if targets:
        out += ["Targets:", ""] + targets + [""]
    out += ["DAGs:", ""]
    for d in dags.values():
        out.append(f"- {d.name}: {d.recipe}; {d.blocks:,} blocks, "
                   f"{d.block_bytes / MIB:,.1f} MiB of blocks, largest block "
                   f"{d.largest_block:,} B, root `{d.root}`")
    out += ["", "Machine:", ""] + [f"- {k}: {v}" for k, v in info]
    out += ["", f"Command: `{cmdline}`", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- main

def find_kubo(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    script = REPO_ROOT / "compat-tests" / "scripts" / "install-kubo.sh"
    log(f"locating Kubo via {script.relative_to(REPO_ROOT)} (builds it if missing)")
    out = run(["bash", str(script)], timeout=3600).strip().splitlines()
    if not out:
        raise BenchError("install-kubo.sh printed no path")
    return Path(out[-1])


def find_sidecar(explicit: str | None, build: bool) -> Path:
    p = Path(explicit or os.environ.get("SIDECAR_BIN") or REPO_ROOT / "target/release/sidecar")
    if not p.is_absolute():
        p = Path.cwd() / p
    if not p.exists():
        if not build:
            raise BenchError(f"sidecar binary {p} not found (build it with "
                             "`cargo build --release -p sidecar`, or pass --build-sidecar)")
        log("building sidecar (cargo build --release -p sidecar)")
        run(["cargo", "build", "--release", "-p", "sidecar"], cwd=REPO_ROOT, timeout=7200)
    try:
        helptext = run([str(p), "--help"], timeout=30)
    except BenchError as e:
        raise BenchError(f"sidecar binary {p} does not run: {e}")
    if "run" not in helptext.split():
        raise BenchError(f"{p} has no `run` subcommand")
    return p


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--workdir", default=str(Path.home() / ".cache/sidecar/bench"),
                    help="cache for generated CARs; run directories go under it too")
    ap.add_argument("--large-mib", type=int, default=1024, help="size of the large-block DAG's file")
    ap.add_argument("--large-chunk", type=int, default=MIB, help="leaf size of the large DAG")
    ap.add_argument("--small-blocks", type=int, default=100_000,
                    help="number of leaf blocks of the small-block DAG")
    ap.add_argument("--small-chunk", type=int, default=4096, help="leaf size of the small DAG")
    ap.add_argument("--small-max-links", type=int, default=64,
                    help="--max-file-links for the small DAG (64 keeps the interior "
                         "dag-pb nodes <= 4 KiB too; Kubo's default 174 makes ~8.5 KiB ones)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dags", default="large,small", help="which DAGs: large, small")
    ap.add_argument("--servers", default="sidecar,kubo",
                    help="servers in run order; the last `kubo` is the baseline for ratios "
                         "(e.g. kubo,kubo to test the harness without the sidecar)")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--fetch", choices=sorted(FETCH), default="pin",
                    help="client command that fetches the DAG")
    ap.add_argument("--clients", type=int, default=1,
                    help="client Kubo nodes fetching the whole DAG at the same time; MiB/s "
                         "and CPU/GiB then count every copy served")
    ap.add_argument("--client-repo-dir",
                    help="parent directory for the client repos (default: the run directory "
                         "under --workdir); e.g. /dev/shm takes the client's disk out of the picture")
    ap.add_argument("--client-profile", default="",
                    help="extra `ipfs init` profiles for the client, comma-separated "
                         "(e.g. pebbleds); the default is Kubo's default datastore (flatfs)")
    ap.add_argument("--fetch-timeout", type=float, default=1800, help="per fetch, seconds")
    ap.add_argument("--stall-timeout", type=float, default=120,
                    help="fail a fetch whose progress has not moved for this long, seconds")
    ap.add_argument("--import-timeout", type=float, default=3600, help="per server import, seconds")
    ap.add_argument("--kubo-bin", help="Kubo binary (default: compat-tests/scripts/install-kubo.sh)")
    ap.add_argument("--sidecar-bin", help="sidecar binary (default: $SIDECAR_BIN, "
                    "else target/release/sidecar)")
    ap.add_argument("--sidecar-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="config override passed to the sidecar as --set (repeatable)")
    ap.add_argument("--build-sidecar", action="store_true",
                    help="run `cargo build --release -p sidecar` if the binary is missing")
    add_output_args(ap, "keep the run directory (repos, logs)")
    a = ap.parse_args()
    cmdline = start_run()

    dag_names = [d.strip() for d in a.dags.split(",") if d.strip()]
    if not dag_names or any(d not in ("large", "small") for d in dag_names):
        raise BenchError("--dags takes large and/or small")
    kinds = [s.strip() for s in a.servers.split(",") if s.strip()]
    if not kinds or any(k not in ("kubo", "sidecar") for k in kinds):
        raise BenchError("--servers takes a list of kubo / sidecar")
    if a.clients < 1 or a.trials < 1:
        raise BenchError("--clients and --trials must be at least 1")
    if "kubo" not in kinds:
        raise BenchError("--servers needs a kubo server as the baseline")

    kubo = find_kubo(a.kubo_bin)
    sidecar = find_sidecar(a.sidecar_bin, a.build_sidecar) if "sidecar" in kinds else None
    workdir = Path(a.workdir).expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine_info(kubo, sidecar)
    load = dict(info)["load average at start"]
    if float(load.split()[0]) > 0.5 * (os.cpu_count() or 1):
        log(f"WARNING: load average {load}: the machine is not quiet, numbers will be noisy")

    dags: dict[str, Dag] = {}
    for name in dag_names:
        if name == "large":
            dags[name] = make_dag(kubo, workdir, "large", a.large_mib * MIB, a.large_chunk,
                                  None, a.seed)
        else:
            dags[name] = make_dag(kubo, workdir, "small", a.small_blocks * a.small_chunk,
                                  a.small_chunk, a.small_max_links, a.seed)

    # Server labels: the kind, numbered when it repeats. Baseline: the last kubo.
    labels, counts = [], {k: kinds.count(k) for k in kinds}
    seen: dict[str, int] = {}
    for k in kinds:
        seen[k] = seen.get(k, 0) + 1
        labels.append(k if counts[k] == 1 else f"{k}-{seen[k]}")
    baseline = [l for k, l in zip(kinds, labels) if k == "kubo"][-1]

    rundir = Path(tempfile.mkdtemp(prefix=f"run-{time.strftime('%Y%m%d-%H%M%S')}-", dir=workdir))
    log(f"run directory {rundir}")
    client_root = None
    if a.client_repo_dir:
        client_root = Path(tempfile.mkdtemp(prefix="bench-clients-", dir=a.client_repo_dir))
    trials: list[Trial] = []
    ok = False
    try:
        for dname, dag in dags.items():
            servers = [KuboServer(l, kubo, rundir) if k == "kubo" else
                       SidecarServer(l, sidecar, rundir, a.sidecar_set) for k, l in zip(kinds, labels)]
            for s in servers:
                log(f"{dname}: importing {dag.car.name} into {s.label} (not measured)")
                t = time.monotonic()
                s.prepare(dag.car, a.import_timeout)
                log(f"{dname}: {s.label} import took {time.monotonic() - t:.1f}s")
            for i in range(1, a.trials + 1):
                # Alternate the order between trials so drift hurts both sides alike.
                order = servers if i % 2 else list(reversed(servers))
                for s in order:
                    t = run_trial(kubo, s, dag, i, rundir, a.fetch_timeout, a.fetch,
                                  client_root, a.client_profile, a.clients, a.stall_timeout)
                    trials.append(t)
                    log(f"{dname} trial {i} {s.label}: {t.wall_s:.2f}s "
                        f"{t.clients * dag.block_bytes / MIB / t.wall_s:.1f} MiB/s, server CPU "
                        f"{t.server_cpu_s:.2f}s, peak RSS {t.server_rss_kib / 1024:.0f} MiB "
                        f"(before fetch {t.server_rss_before_kib / 1024:.0f}), client CPU "
                        f"{t.client_cpu_s:.2f}s, {t.blocks_fetched} blocks verified"
                        f"{f' on each of {t.clients} clients' if t.clients > 1 else ''}")
            for s in servers:  # free the disk before the next DAG
                if not a.keep:
                    shutil.rmtree(getattr(s, "data", None) or s.node.repo, ignore_errors=True)
        ok = True
    finally:
        _kill_all()
        if client_root:
            shutil.rmtree(client_root, ignore_errors=True)
        if a.keep or not ok:
            log(f"run directory kept: {rundir}")
        else:
            shutil.rmtree(rundir, ignore_errors=True)

    servers_for_report = [type("S", (), {"label": l})() for l in labels]
    md = report(trials, dags, servers_for_report, baseline, info, cmdline,
                FETCH[a.fetch][2], a.clients)
    print(md)
    if a.markdown_out:
        with open(a.markdown_out, "a") as f:
            f.write(md + "\n")
        log(f"appended the report to {a.markdown_out}")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(
            {"command": cmdline, "machine": dict(info),
             "dags": {k: {**v.__dict__, "car": str(v.car)} for k, v in dags.items()},
             "trials": [t.__dict__ for t in trials]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"fetch_vs_kubo: error: {e}", file=sys.stderr)
        sys.exit(1)
