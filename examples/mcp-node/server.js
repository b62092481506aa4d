// A sessionful MCP server on the official TypeScript SDK 1.x (Streamable HTTP), made for mcpd:
// - takes the socket mcpd hands over (LISTEN_FDS, fd 3) or listens on $PORT;
// - answers MCP on /mcp (sessions live in this process) and a plain GET /health;
// - drains on SIGTERM/SIGINT: stops accepting, lets open requests and streams finish, exits.
// mcpd knows it is ready by probing /mcp (ready = { mcp = URL }).
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const transports = new Map();
let draining = false;

function mcpServer() {
  const server = new McpServer({ name: 'mcpd-example-node', version: '1.0.0' });
  server.registerTool('add', {
    description: 'Add two numbers',
    inputSchema: { a: z.number(), b: z.number() },
  }, async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }));
  server.registerTool('slow_echo', {
    description: 'Echo a text after a pause (a long call)',
    inputSchema: { text: z.string(), ms: z.number().optional() },
  }, async ({ text, ms }) => {
    await sleep(ms ?? 1000);
    return { content: [{ type: 'text', text: `${text} (pid ${process.pid})` }] };
  });
  if (process.env.EXTRA_TOOL) {
    server.registerTool(process.env.EXTRA_TOOL, { description: 'A tool only this config has', inputSchema: {} },
      async () => ({ content: [{ type: 'text', text: 'extra' }] }));
  }
  return server;
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

function jsonError(res, status, code, message) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/health') return res.end('ok\n');
  if (url.pathname !== '/mcp') return jsonError(res, 404, -32000, 'not found');
  // For tests: a file `mcp-broken` holding this pid makes the MCP handler hang (while /health
  // still answers), as a deploy that broke the MCP layer would.
  if (existsSync('mcp-broken') && readFileSync('mcp-broken', 'utf8').trim() === String(process.pid)) return;
  if (draining) res.setHeader('connection', 'close');
  const sid = req.headers['mcp-session-id'];
  try {
    if (req.method === 'POST') {
      const body = await readJson(req);
      let transport = sid ? transports.get(sid) : undefined;
      if (!transport) {
        if (sid) return jsonError(res, 404, -32001, 'Session not found');
        if (!isInitializeRequest(body)) return jsonError(res, 400, -32000, 'Bad Request: no session; send initialize first');
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => transports.set(id, transport),
        });
        transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
        await mcpServer().connect(transport);
      }
      return await transport.handleRequest(req, res, body);
    }
    const transport = sid ? transports.get(sid) : undefined;
    if (!transport) return jsonError(res, 404, -32001, 'Session not found');
    return await transport.handleRequest(req, res);
  } catch (e) {
    if (!res.headersSent) jsonError(res, 500, -32603, String(e));
  }
});

const handedOver = Number(process.env.LISTEN_FDS || 0) > 0 && Number(process.env.LISTEN_PID) === process.pid;
server.listen(handedOver ? { fd: 3 } : { port: Number(process.env.PORT || 3000), host: '127.0.0.1' }, () => {
  console.log(`pid ${process.pid} serving MCP on ${handedOver ? 'the socket from mcpd' : `port ${process.env.PORT || 3000}`}`);
});

function drain(why) {
  if (draining) return;
  draining = true;
  console.log(`pid ${process.pid} draining (${why}): ${transports.size} sessions`);
  server.close(() => process.exit(0));
  server.closeIdleConnections();
}
process.on('SIGTERM', () => drain('SIGTERM'));
process.on('SIGINT', () => drain('SIGINT'));
