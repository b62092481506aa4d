"""An HTTP server on the socket mcpd hands over (fd 3) that drains on SIGTERM: it stops
accepting (the next generation takes the backlog), finishes the requests it holds, exits 0."""
import signal, socket, socketserver, threading


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline()
        while line not in (b"\r\n", b"\n", b""):
            line = self.rfile.readline()
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n")


class Server(socketserver.ThreadingMixIn, socketserver.BaseServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, sock):
        super().__init__(None, Handler)
        self.socket = sock

    def get_request(self):
        return self.socket.accept()

    def fileno(self):
        return self.socket.fileno()


server = Server(socket.socket(fileno=3))
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever(poll_interval=0.05)
server.server_close()
