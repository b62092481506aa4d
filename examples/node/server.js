// A dependency-free Node HTTP server made for mcpd (and systemd):
// - listens on the socket mcpd hands over (LISTEN_FDS, fd 3) or, alone, on $PORT;
// - says it is ready with process.send('ready') (mcpd `ready = "ipc"`, as under PM2);
// - drains on SIGTERM/SIGINT or a 'shutdown' message: stops accepting, lets in-flight
//   requests and streams finish, then exits.
// Routes: GET / answers at once; GET /stream?n=20&ms=100 sends n SSE events, one every ms.
'use strict';
const http = require('node:http');

let draining = false;
const streams = new Set();

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (draining) res.setHeader('connection', 'close');
  if (url.pathname === '/stream') {
    const n = Number(url.searchParams.get('n') || 20);
    const every = Number(url.searchParams.get('ms') || 100);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let i = 0;
    const timer = setInterval(() => {
      res.write(`data: ${i} from ${process.pid}\n\n`);
      if (++i >= n) finish();
    }, every);
    const finish = () => { clearInterval(timer); streams.delete(finish); res.end(); };
    streams.add(finish);
    req.on('close', () => { clearInterval(timer); streams.delete(finish); });
    return;
  }
  res.end(`hello from pid ${process.pid}\n`);
});
server.keepAliveTimeout = 5000;

const handedOver = Number(process.env.LISTEN_FDS || 0) > 0 && Number(process.env.LISTEN_PID) === process.pid;
if (handedOver) {
  server.listen({ fd: 3 });
} else {
  server.listen(Number(process.env.PORT || 3000), '127.0.0.1');
}

server.on('listening', () => {
  const delay = Number(process.env.READY_DELAY_MS || 0);
  setTimeout(() => {
    console.log(`pid ${process.pid} ready (${handedOver ? 'socket from mcpd' : 'own port'})`);
    if (process.send) process.send('ready');
  }, delay);
});

function drain(why) {
  if (draining) return;
  draining = true;
  console.log(`pid ${process.pid} draining (${why}): ${streams.size} open streams`);
  // Stop accepting; close idle keep-alive connections; exit once in-flight work is done.
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  // The IPC channel would keep the event loop alive: let it go.
  if (process.channel) process.channel.unref();
}
process.on('SIGTERM', () => drain('SIGTERM'));
process.on('SIGINT', () => drain('SIGINT'));
process.on('message', (m) => { if (m === 'shutdown') drain('shutdown message'); });
