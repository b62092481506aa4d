// A stateless MCP server on the official TypeScript SDK 2.x (`createMcpHandler`): every
// request is served by a fresh server instance, no session lives in the process. Under
// mcpd it serves on the socket handed over as fd 3 (`listen` or a front); run alone it
// listens on PORT (default 3500).
//   node server.js
import http from 'node:http';
import { Readable } from 'node:stream';
import { McpServer, createMcpHandler } from '@modelcontextprotocol/server';
import * as z from 'zod';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function factory() {
  const server = new McpServer({ name: 'mcp-node-stateless', version: '1.0.0' });
  server.registerTool('add', {
    description: 'Adds two numbers',
    inputSchema: z.object({ a: z.number(), b: z.number() }),
  }, async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }));
  server.registerTool('slow_echo', {
    description: 'Echoes the text after a pause',
    inputSchema: z.object({ text: z.string(), ms: z.number().max(60000) }),
  }, async ({ text, ms }) => {
    await sleep(ms);
    return { content: [{ type: 'text', text: `${text} (after ${ms} ms, pid ${process.pid})` }] };
  });
  return server;
}

const handler = createMcpHandler(factory);

// node:http <-> web-standard Request/Response, bodies streamed both ways.
async function serve(req, res) {
  const url = `http://${req.headers.host ?? 'localhost'}${req.url}`;
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
  }
  const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : Readable.toWeb(req);
  try {
    const response = await handler.fetch(new Request(url, { method: req.method, headers, body, duplex: 'half' }));
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (!response.body) return res.end();
    Readable.fromWeb(response.body).pipe(res);
  } catch (e) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(String(e));
  }
}

const server = http.createServer((req, res) => {
  if (req.url === '/health') return res.writeHead(200).end('ok\n');
  if (!req.url.startsWith('/mcp')) return res.writeHead(404).end();
  serve(req, res);
});
server.keepAliveTimeout = 65000;
const handed = Number(process.env.LISTEN_FDS || 0) > 0 && process.env.LISTEN_PID === String(process.pid);
server.listen(handed ? { fd: 3 } : { port: Number(process.env.PORT || 3500), host: '127.0.0.1' }, () => {
  console.log(`mcp-node-stateless ${process.pid} serving${handed ? ' on fd 3' : ''}`);
});
process.on('SIGTERM', () => {
  console.log('draining');
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
