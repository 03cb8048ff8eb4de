// watch.mjs — a Node.js WebSocket client (Node's built-in WebSocket) for the sidecar's
// name-watch endpoints, used by the compat tests.
//
//   node watch.mjs --url ws://127.0.0.1:8010/name/k51…/watch --count 2 [--timeout-ms 30000]
//
// Prints `open` on stderr once connected, then every text message as one line on stdout,
// and exits 0 after --count messages; 1 on an error, a close before that, or the timeout.

import { parseArgs } from 'node:util'

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    count: { type: 'string', default: '1' },
    'timeout-ms': { type: 'string', default: '30000' }
  },
  strict: true
})
if (values.url == null) {
  process.stderr.write('watch.mjs: --url is required\n')
  process.exit(2)
}
const count = Number.parseInt(values.count, 10)
const timer = setTimeout(() => {
  process.stderr.write(`watch.mjs: no ${count} messages within ${values['timeout-ms']} ms\n`)
  process.exit(1)
}, Number.parseInt(values['timeout-ms'], 10))

const ws = new WebSocket(values.url)
let received = 0
ws.addEventListener('open', () => process.stderr.write('open\n'))
ws.addEventListener('message', (event) => {
  process.stdout.write(`${event.data}\n`)
  received += 1
  if (received >= count) {
    clearTimeout(timer)
    ws.close()
    process.exit(0)
  }
})
ws.addEventListener('error', (event) => {
  process.stderr.write(`watch.mjs: ${event.message ?? 'WebSocket error'}\n`)
  process.exit(1)
})
ws.addEventListener('close', () => {
  if (received < count) {
    process.stderr.write(`watch.mjs: closed after ${received} of ${count} messages\n`)
    process.exit(1)
  }
})
