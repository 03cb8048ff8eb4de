#!/usr/bin/env python3
"""Republish throughput against a real local Kubo.

For each setup and concurrency: a cold sidecar republishing through Kubo
node A, N distinct signed records PUT to it by `sidecar-loadgen ipns`
(each record is then due at once as fresh), and the time until
`sidecar_republish_puts_total{result="ok"}` reaches N, counted from the
first PUT (so it includes the PUTs themselves, ~0.1 s per 1,000). Setups:

- `offline`: one Kubo with `Routing.Type=none`, puts with `allow-offline`
  (Kubo's own cost of `name/put`: validation, the routing get it does
  first, the datastore write);
- `dht4`: four Kubo daemons with `Routing.Type=dht`, full mesh on loopback
  (each put goes to the three other nodes' DHT servers).

The anchor is ipns-publisher's 20 puts in flight (the sidecar's default).
Prints a table and how many names one sidecar + one Kubo keep alive in a
24 h cycle at the best measured rate.

    cargo build --release -p sidecar -p loadgen
    python3 bench/republish_kubo.py [--records 2000] [--concurrency 5,20,50]
        [--setups offline,dht4]

Standard library only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_vs_kubo import (  # noqa: E402
    BenchError, KuboNode, _kill_all, find_kubo, log, run, start_run,
)
from quota_load import Sidecar, find_bin, machine_info  # noqa: E402

ANCHOR = 20


def puts_ok(sidecar: Sidecar) -> float:
    with urllib.request.urlopen(f"http://{sidecar.http}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('sidecar_republish_puts_total{result="ok"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def kubo_nodes(kubo: Path, setup: str, work: Path) -> list[KuboNode]:
    n = 4 if setup == "dht4" else 1
    nodes = []
    for i in range(n):
        k = KuboNode(kubo, work / f"kubo{i}", f"{setup}-kubo{i}", work)
        k.init()
        if setup == "dht4":
            k.cli("config", "Routing.Type", "dht")
        k.start()
        nodes.append(k)
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            a.rpc("swarm/connect", b.swarm_addr())
    time.sleep(3 if n > 1 else 0)
    return nodes


class RepublishingSidecar(Sidecar):
    """A sidecar republishing through `kubo_rpc` with `concurrency` in flight."""

    def __init__(self, *args, kubo_rpc: str, concurrency: int, allow_offline: bool):
        super().__init__(*args)
        self.extra = {
            "SIDECAR_KUBO__RPC": kubo_rpc,
            "SIDECAR_REPUBLISH__CONCURRENCY": str(concurrency),
            "SIDECAR_REPUBLISH__ALLOW_OFFLINE": "true" if allow_offline else "false",
        }

    def env(self) -> dict:
        return {**super().env(), **self.extra}


def trial(sidecar_bin: Path, loadgen: Path, kubo_a: KuboNode, setup: str, conc: int,
          records: int, work: Path) -> dict:
    data = work / f"sidecar-{setup}-{conc}"
    sidecar = RepublishingSidecar(sidecar_bin, data, work / f"sidecar-{setup}-{conc}.log", None,
                                  kubo_rpc=kubo_a.api, concurrency=conc,
                                  allow_offline=setup == "offline")
    sidecar.start()
    try:
        started = time.monotonic()
        run([str(loadgen), "ipns", "--target", sidecar.http, "--records", str(records),
             "--clients", "16", "--get-duration", "1s"], timeout=1800)
        finished = None
        deadline = time.monotonic() + 1800
        done = 0.0
        while time.monotonic() < deadline:
            done = puts_ok(sidecar)
            if done >= records:
                finished = time.monotonic()
                break
            time.sleep(0.05)
        if finished is None:
            raise BenchError(f"{setup} c={conc}: only {done:.0f}/{records} puts completed")
        rate = records / max(finished - started, 1e-3)
    finally:
        sidecar.stop()
    log(f"{setup} concurrency {conc}: {rate:,.0f} puts/s")
    return {"setup": setup, "concurrency": conc, "rate": rate}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--concurrency", default="5,20,50")
    ap.add_argument("--setups", default="offline,dht4")
    ap.add_argument("--kubo", help="ipfs binary (default: the compat tests' cached build)")
    a = ap.parse_args()
    start_run()
    sidecar_bin = find_bin("sidecar", None)
    loadgen = find_bin("sidecar-loadgen", None)
    kubo = find_kubo(a.kubo)
    rows = []
    try:
        for setup in a.setups.split(","):
            with tempfile.TemporaryDirectory(prefix=f"republish-{setup}-") as tmp:
                nodes = kubo_nodes(kubo, setup, Path(tmp))
                try:
                    for c in [int(x) for x in a.concurrency.split(",")]:
                        rows.append(trial(sidecar_bin, loadgen, nodes[0], setup, c,
                                          a.records, Path(tmp)))
                finally:
                    for k in nodes:
                        k.stop()
    except BenchError as e:
        print(f"republish_kubo.py: {e}", file=sys.stderr)
        return 1
    finally:
        _kill_all()
    print(f"\n{a.records:,} distinct Ed25519 records per trial, each put once through Kubo A\n")
    print("| setup | concurrency | puts/s | vs anchor (20) | names kept alive per 24 h |")
    print("|---|---:|---:|---:|---:|")
    for setup in a.setups.split(","):
        mine = [r for r in rows if r["setup"] == setup]
        anchor = next((r["rate"] for r in mine if r["concurrency"] == ANCHOR), None)
        for r in mine:
            vs = f"{r['rate'] / anchor:.2f}×" if anchor else "-"
            print(f"| {setup} | {r['concurrency']} | {r['rate']:,.0f} | {vs} | "
                  f"{r['rate'] * 86_400:,.0f} |")
    print("\nMachine:\n")
    for k, v in machine_info(sidecar_bin):
        print(f"- {k}: {v}")
    print(f"\nCommand: `{' '.join(['bench/republish_kubo.py', *sys.argv[1:]])}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
