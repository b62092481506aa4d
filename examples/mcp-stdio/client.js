// Official TypeScript SDK 1.x clients for mcpd's stdio tests: N sessions through the front.
// With server-everything (the default) each lists tools, calls `echo`, a tool that reports
// progress, reads a resource, and calls a tool that makes the server ask the client for
// sampling (answered here); with `memory` (server-memory) each stores an entity and reads the
// graph back; with `add` (any server with an `add(a, b)` tool) each adds two numbers. Prints a
// JSON summary.
//   node client.js http://127.0.0.1:3911/mcp 5 [everything|memory|add]
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const url = new URL(process.argv[2]);
const count = Number(process.argv[3] || 3);
const kind = process.argv[4] || 'everything';
const stats = { sessions: 0, tools: 0, echo: 0, progress: 0, resources: 0, sampling: 0, stored: 0, errors: [] };

async function memory(i, client) {
  const { tools } = await client.listTools();
  if (tools.some((t) => t.name === 'create_entities')) stats.tools++;
  const name = `entity-${process.pid}-${i}`;
  await client.callTool({
    name: 'create_entities',
    arguments: { entities: [{ name, entityType: 'test', observations: [`seen by client ${i}`] }] },
  });
  const graph = await client.callTool({ name: 'read_graph', arguments: {} });
  if (JSON.stringify(graph).includes(name)) stats.stored++;
}

async function one(i) {
  const client = new Client({ name: `stdio-test-${i}`, version: '1.0.0' }, { capabilities: { sampling: {} } });
  client.setRequestHandler(CreateMessageRequestSchema, async () => ({
    role: 'assistant',
    content: { type: 'text', text: `sampled by client ${i}` },
    model: 'test-model',
    stopReason: 'endTurn',
  }));
  const transport = new StreamableHTTPClientTransport(url);
  await client.connect(transport);
  stats.sessions++;
  if (kind === 'add') {
    const { tools } = await client.listTools();
    if (tools.some((t) => t.name === 'add')) stats.tools++;
    const sum = await client.callTool({ name: 'add', arguments: { a: i, b: 1000 } });
    if (JSON.stringify(sum).includes(String(i + 1000))) stats.echo++;
    await transport.terminateSession();
    await client.close();
    return;
  }
  if (kind === 'memory') {
    await memory(i, client);
    await transport.terminateSession();
    await client.close();
    return;
  }
  const { tools } = await client.listTools();
  if (tools.some((t) => t.name === 'echo')) stats.tools++;
  const echo = await client.callTool({ name: 'echo', arguments: { message: `hello ${i}` } });
  if (JSON.stringify(echo).includes(`hello ${i}`)) stats.echo++;
  let progress = 0;
  await client.callTool(
    { name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
    undefined,
    { onprogress: () => { progress++; } },
  );
  if (progress >= 3) stats.progress++;
  const { resources } = await client.listResources();
  if (resources.length > 0) {
    const read = await client.readResource({ uri: resources[0].uri });
    if (read.contents.length > 0) stats.resources++;
  }
  const sampled = await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'hi', maxTokens: 10 } });
  if (JSON.stringify(sampled).includes(`sampled by client ${i}`)) stats.sampling++;
  await transport.terminateSession();
  await client.close();
}

const results = await Promise.allSettled(Array.from({ length: count }, (_, i) => one(i)));
for (const r of results) {
  if (r.status === 'rejected' && stats.errors.length < 5) stats.errors.push(String(r.reason?.message ?? r.reason));
}
console.log(JSON.stringify(stats));
process.exit(0);
