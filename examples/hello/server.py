"""A dependency-free HTTP server for trying mcpd.

Listens on the socket mcpd hands over (LISTEN_FDS) or on $PORT, says READY=1 on
$NOTIFY_SOCKET once it listens, and drains on SIGTERM/SIGINT.
"""

import http.server
import os
import signal
import socket
import sys
import threading


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"hello from pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


def notify(message):
    """sd_notify in four lines: one datagram to $NOTIFY_SOCKET."""
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode(), "\0" + path[1:] if path.startswith("@") else path)


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hello, bind_and_activate=False)
    if int(os.environ.get("LISTEN_FDS", "0")) > 0 and os.environ.get("LISTEN_PID") == str(os.getpid()):
        server.socket = socket.socket(fileno=3)  # the socket mcpd (or systemd) bound
    else:
        server.server_bind()
        server.server_activate()
    server.daemon_threads = False  # let in-flight requests finish on shutdown

    def drain(signum, _frame):
        print(f"signal {signum}: finishing in-flight requests, then exiting", flush=True)
        notify("STOPPING=1")
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, drain)
    signal.signal(signal.SIGINT, drain)
    print(f"pid {os.getpid()} listening", flush=True)
    notify("READY=1\nSTATUS=serving")
    server.serve_forever()
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
