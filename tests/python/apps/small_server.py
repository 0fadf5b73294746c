"""A tiny stdlib HTTP server for `muster run` tests: it serves the socket it
inherits on fd 3 and reports what muster gave it.

    muster run -w 2 -- python3 small_server.py [--notify] [--exit CODE]

Routes: `GET /` answers `ok <pid>`; `GET /env` answers a JSON object with the
worker's pid and the variables muster sets (MUSTER_WORKER_ID, LISTEN_FDS,
LISTEN_PID, LISTEN_FDNAMES, PROMETHEUS_MULTIPROC_DIR, NOTIFY_SOCKET,
WATCHDOG_USEC) and whether fd 3 is a listening socket. SIGTERM drains: the server
stops accepting, finishes the request in progress and exits 0.

`--notify` sends READY=1 (via muster_worker) once it serves; `--watchdog-once`
sends WATCHDOG=1 once and never again (a worker whose liveness pings stop); `--exit CODE` exits
with CODE at once, without serving (a command that cannot start), and so does
`--fail-if PATH` while PATH exists (a deployment that broke the app).
"""

import json
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

VARIABLES = (
    "MUSTER_WORKER_ID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "PROMETHEUS_MULTIPROC_DIR",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
)


BUSY = []


class Stop(Exception):
    """Raised by the TERM handler to leave a blocking accept (another worker may
    have taken the connection this one was woken for)."""


class Server(HTTPServer):
    """Busy from the accept of a connection to its close: a TERM then waits."""

    def get_request(self):
        request = self.socket.accept()  # a TERM while waiting raises Stop
        BUSY.append(1)
        return request

    def shutdown_request(self, request):
        try:
            super().shutdown_request(request)
        finally:
            if BUSY:
                BUSY.pop()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/env":
            info = {name: os.environ.get(name) for name in VARIABLES}
            info["pid"] = os.getpid()
            probe = socket.socket(fileno=os.dup(3))
            info["fd3_listening"] = bool(
                probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            )
            probe.close()
            body = json.dumps(info).encode()
        else:
            body = ("ok %d\n" % os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main(argv):
    if "--exit" in argv:
        code = int(argv[argv.index("--exit") + 1])
        print("small_server: exiting with %d at once" % code, file=sys.stderr, flush=True)
        sys.exit(code)
    if "--fail-if" in argv and os.path.exists(argv[argv.index("--fail-if") + 1]):
        print("small_server: broken, exiting with 1", file=sys.stderr, flush=True)
        sys.exit(1)
    server = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=3)
    server.socket.setblocking(True)

    stop = []

    def on_term(signum, frame):
        # A request in progress is finished first (the loop notices `stop`
        # after it); otherwise leave the wait (poll, or a blocking accept).
        stop.append(signum)
        if not BUSY:
            raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    server.timeout = 0.2
    if "--notify" in argv or "--watchdog-once" in argv:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "python"))
        import muster_worker

        if "--notify" in argv:
            muster_worker.mark_ready()
        if "--watchdog-once" in argv:
            muster_worker.watchdog()
    # One request at a time; between two, a TERM stops the loop (drain: the
    # request in progress is finished first).
    while not stop:
        try:
            server.handle_request()
        except Stop:
            break
    print("small_server: pid %d draining" % os.getpid(), file=sys.stderr, flush=True)
    server.server_close()
    print("small_server: pid %d drained" % os.getpid(), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
