// Official TypeScript SDK 2.x clients for mcpd's stdio tests: N clients through the front;
// even ones negotiate the protocol (`versionNegotiation: 'auto'`: the 2026-07-28 revision,
// `server/discover` and requests without a session), odd ones speak the 2025 revision. Each
// lists tools, calls `echo` and a tool that reports progress. Prints a JSON summary.
//   node client2.js http://127.0.0.1:3911/mcp 4
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const url = new URL(process.argv[2]);
const count = Number(process.argv[3] || 2);
const stats = { clients: 0, tools: 0, echo: 0, progress: 0, protocols: [], errors: [] };
const protocols = new Set();

async function one(i) {
  const mode = i % 2 === 0 ? 'auto' : 'legacy';
  const client = new Client({ name: `stdio2-${i}`, version: '1.0.0' }, { versionNegotiation: { mode } });
  await client.connect(new StreamableHTTPClientTransport(url));
  stats.clients++;
  protocols.add(client.getNegotiatedProtocolVersion?.() ?? '?');
  const { tools } = await client.listTools();
  if (tools.some((t) => t.name === 'echo')) stats.tools++;
  const echo = await client.callTool({ name: 'echo', arguments: { message: `two ${i}` } });
  if (JSON.stringify(echo).includes(`two ${i}`)) stats.echo++;
  let progress = 0;
  await client.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
    { onprogress: () => { progress++; } },
  );
  if (progress >= 3) stats.progress++;
  await client.close();
}

const results = await Promise.allSettled(Array.from({ length: count }, (_, i) => one(i)));
for (const r of results) {
  if (r.status === 'rejected' && stats.errors.length < 5) stats.errors.push(String(r.reason?.stack ?? r.reason).slice(0, 500));
}
stats.protocols = [...protocols].sort();
console.log(JSON.stringify(stats));
process.exit(0);
