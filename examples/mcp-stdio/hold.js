// For mcpd's fault tests: opens N sessions (TypeScript SDK 1.x) through the front, each with
// its GET stream open and a call in flight that the server holds for an hour; prints
// "holding N" and waits to be killed.
//   node hold.js http://127.0.0.1:3911/mcp 100
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const url = new URL(process.argv[2]);
const count = Number(process.argv[3] || 10);
const opened = await Promise.allSettled(Array.from({ length: count }, async (_, i) => {
  const client = new Client({ name: `hold-${i}`, version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(url));
  client.callTool({ name: 'hold', arguments: { seconds: 3600 } }, undefined, { timeout: 7200000 }).catch(() => {});
  return client;
}));
const failed = opened.filter((r) => r.status === 'rejected');
console.log(`holding ${opened.length - failed.length}${failed.length ? ` (${failed[0].reason})` : ''}`);
setInterval(() => {}, 1000);
