// Load for mcpd's stdio benchmark (cli/benches/stdio.rs), official TypeScript SDK 1.x clients.
//   node bench.js load URL N SECONDS   N sessions calling `get-sum` back to back for SECONDS:
//                                     prints {calls, per_s, p50_ms, p99_ms, failed}
//   node bench.js open URL K GAP_MS    K sessions opened one after another, GAP_MS apart (each
//                                     closed after): prints {open_p50_ms, open_max_ms}
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [mode, target, nArg, arg] = process.argv.slice(2);
const url = new URL(target);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

async function open(i) {
  const client = new Client({ name: `bench-${i}`, version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(url);
  await client.connect(transport);
  return { client, transport };
}

if (mode === 'load') {
  const n = Number(nArg);
  const seconds = Number(arg);
  const sessions = await Promise.all(Array.from({ length: n }, (_, i) => open(i)));
  const latencies = [];
  let failed = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(sessions.map(async ({ client }, i) => {
    for (let k = 0; Date.now() < end; k++) {
      const t = performance.now();
      try {
        const r = await client.callTool({ name: 'get-sum', arguments: { a: i, b: k } });
        if (!JSON.stringify(r).includes(String(i + k))) throw new Error('wrong sum');
        latencies.push(performance.now() - t);
      } catch {
        failed++;
      }
    }
  }));
  latencies.sort((a, b) => a - b);
  console.log(JSON.stringify({
    calls: latencies.length,
    per_s: Math.round(latencies.length / seconds),
    p50_ms: Number(pct(latencies, 0.5).toFixed(2)),
    p99_ms: Number(pct(latencies, 0.99).toFixed(2)),
    failed,
  }));
  await Promise.all(sessions.map(async ({ client, transport }) => {
    await transport.terminateSession().catch(() => {});
    await client.close().catch(() => {});
  }));
} else if (mode === 'open') {
  const k = Number(nArg);
  const gap = Number(arg);
  const times = [];
  for (let i = 0; i < k; i++) {
    await sleep(gap);
    const t = performance.now();
    const { client, transport } = await open(i);
    times.push(performance.now() - t);
    await transport.terminateSession().catch(() => {});
    await client.close().catch(() => {});
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ open_p50_ms: Number(pct(times, 0.5).toFixed(1)), open_max_ms: Number(times[times.length - 1].toFixed(1)) }));
}
process.exit(0);
