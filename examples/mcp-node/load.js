// A load of real MCP clients (the official TypeScript SDK 1.x) for mcpd's tests and
// benchmarks: N sessions, each calling `add` every 100 ms and sometimes the 800 ms `slow_echo`,
// checking every answer. Prints "connected N" once every session is up, then "calls N failed M"
// every 250 ms; on SIGTERM it ends the sessions (DELETE) and prints a JSON summary.
//   node load.js http://127.0.0.1:3400/mcp 20
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const url = new URL(process.argv[2]);
const count = Number(process.argv[3] || 20);
const every = Number(process.argv[4] || 100);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let stop = false;
process.on('SIGTERM', () => { stop = true; });
const stats = { sessions: count, calls: 0, slow_calls: 0, failed: 0, lost: 0, errors: [] };
const lost = new Set();

async function session(i) {
  const client = new Client({ name: `load-${i}`, version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(url);
  await client.connect(transport);
  return { i, client, transport };
}

async function run({ i, client, transport }) {
  for (let n = 0; !stop; n++) {
    const slow = i % 4 === 0 && n % 20 === 5;
    try {
      const result = slow
        ? await client.callTool({ name: 'slow_echo', arguments: { text: `s${i}-${n}`, ms: 800 } })
        : await client.callTool({ name: 'add', arguments: { a: i, b: n } });
      const text = result.content?.[0]?.text ?? '';
      const ok = slow ? text.startsWith(`s${i}-${n} `) : text === String(i + n);
      if (!ok) throw new Error(`wrong answer ${JSON.stringify(text)}`);
      stats.calls++;
      if (slow) stats.slow_calls++;
    } catch (e) {
      stats.failed++;
      lost.add(i);
      if (stats.errors.length < 5) stats.errors.push(`session ${i}: ${e.message}`);
    }
    await sleep(every);
  }
}

const sessions = await Promise.all(Array.from({ length: count }, (_, i) => session(i)));
const progress = setInterval(() => console.log(`calls ${stats.calls} failed ${stats.failed}`), 250);
console.log(`connected ${sessions.length}`);
await Promise.all(sessions.map(run));
clearInterval(progress);
stats.lost = lost.size;
await Promise.all(sessions.map(async ({ client, transport }) => {
  await transport.terminateSession().catch(() => {});
  await client.close().catch(() => {});
}));
console.log(JSON.stringify(stats));
