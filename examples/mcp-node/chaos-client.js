// Live MCP sessions for mcpd's chaos soak (`cargo bench -p mcpd-cli --bench chaos`), on the
// official TypeScript SDK 1.x: N sessions, each calling `add` every 100 ms with a 5 s timeout
// and checking the answer. A session ends itself (DELETE) after 10-20 s and opens a new one,
// as real agents do. A failed call is reported and its session replaced: the soak decides
// whether a fault it injected explains the failure. Output, one JSON object per line:
//   {"event":"fail","session":i,"start":ms,"end":ms,"error":"..."}   (times: Unix ms)
//   {"event":"stats","calls":N,"failed":M,"sessions":K}              (every second, and at exit)
// It runs until SIGTERM.
//   node chaos-client.js http://127.0.0.1:3400/mcp 6
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const url = new URL(process.argv[2]);
const count = Number(process.argv[3] || 6);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const stats = { event: 'stats', calls: 0, failed: 0, sessions: 0 };
let stop = false;
process.on('SIGTERM', () => { stop = true; });

function report(session, start, error) {
  stats.failed++;
  const message = String(error?.message ?? error).slice(0, 200);
  console.log(JSON.stringify({ event: 'fail', session, start, end: Date.now(), error: message }));
}

async function open(i) {
  while (!stop) {
    const start = Date.now();
    const client = new Client({ name: `chaos-${i}`, version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(url);
    // A GET stream that fails is retried by the transport; it is not a call.
    transport.onerror = () => {};
    try {
      await client.connect(transport, { timeout: 5000 });
      stats.sessions++;
      return { client, transport };
    } catch (e) {
      report(i, start, `connect: ${e?.message ?? e}`);
      await client.close().catch(() => {});
      await sleep(250);
    }
  }
  return null;
}

async function close(s, end) {
  if (end) await s.transport.terminateSession().catch(() => {});
  await s.client.close().catch(() => {});
}

async function run(i) {
  let s = await open(i);
  let until = Date.now() + 10000 + Math.random() * 10000;
  for (let n = 0; !stop && s; n++) {
    if (Date.now() > until) {
      await close(s, true);
      s = await open(i);
      until = Date.now() + 10000 + Math.random() * 10000;
      if (!s) break;
    }
    const start = Date.now();
    try {
      const result = await s.client.callTool({ name: 'add', arguments: { a: i, b: n } }, undefined, { timeout: 5000 });
      const text = result.content?.[0]?.text ?? '';
      if (text !== String(i + n)) throw new Error(`wrong answer ${JSON.stringify(text)}`);
      stats.calls++;
    } catch (e) {
      report(i, start, e);
      await close(s, false);
      s = await open(i);
    }
    await sleep(100);
  }
  if (s) await close(s, true);
}

const progress = setInterval(() => console.log(JSON.stringify(stats)), 1000);
await Promise.all(Array.from({ length: count }, (_, i) => run(i)));
clearInterval(progress);
console.log(JSON.stringify(stats));
