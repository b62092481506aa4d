// A load of real MCP clients of the official TypeScript SDK 2.x against a stateless server:
// N clients, each calling `add` every 100 ms and sometimes the 800 ms `slow_echo`, checking
// every answer (SLOW_MS sets the slow call's length). Even-numbered clients negotiate the
// protocol (`versionNegotiation: 'auto'`: the 2026-07-28 per-request revision), odd ones
// speak the 2025 revision, which the server answers statelessly. Prints "connected N" once every client is up, then "calls N failed M"
// every 250 ms; on SIGTERM it prints a JSON summary.
//   node load.js http://127.0.0.1:3500/mcp 20
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const url = new URL(process.argv[2]);
const count = Number(process.argv[3] || 20);
const every = Number(process.argv[4] || 100);
const slowMs = Number(process.env.SLOW_MS || 800);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let stop = false;
process.on('SIGTERM', () => { stop = true; });
const stats = { clients: count, calls: 0, slow_calls: 0, failed: 0, protocols: [], errors: [] };
const pids = new Set();

async function connect(i) {
  const mode = i % 2 === 0 ? 'auto' : 'legacy';
  const client = new Client({ name: `load-${i}`, version: '1.0.0' }, { versionNegotiation: { mode } });
  await client.connect(new StreamableHTTPClientTransport(url));
  return { i, client };
}

async function run({ i, client }) {
  for (let n = 0; !stop; n++) {
    const slow = i % 4 === 0 && n % 20 === 5;
    try {
      const result = slow
        ? await client.callTool({ name: 'slow_echo', arguments: { text: `s${i}-${n}`, ms: slowMs } })
        : await client.callTool({ name: 'add', arguments: { a: i, b: n } });
      const text = result.content?.[0]?.text ?? '';
      const ok = slow ? text.startsWith(`s${i}-${n} `) : text === String(i + n);
      if (!ok) throw new Error(`wrong answer ${JSON.stringify(text)}`);
      if (slow) pids.add(text.replace(/.*pid (\d+)\)$/, '$1'));
      stats.calls++;
      if (slow) stats.slow_calls++;
    } catch (e) {
      stats.failed++;
      if (stats.errors.length < 5) stats.errors.push(`client ${i}: ${e.message}`);
    }
    await sleep(every);
  }
}

const clients = await Promise.all(Array.from({ length: count }, (_, i) => connect(i)));
stats.protocols = [...new Set(clients.map(({ client }) => client.getNegotiatedProtocolVersion?.() ?? '?'))].sort();
const progress = setInterval(() => console.log(`calls ${stats.calls} failed ${stats.failed}`), 250);
console.log(`connected ${clients.length}`);
await Promise.all(clients.map(run));
clearInterval(progress);
await Promise.all(clients.map(({ client }) => client.close().catch(() => {})));
stats.server_pids = pids.size;
console.log(JSON.stringify(stats));
