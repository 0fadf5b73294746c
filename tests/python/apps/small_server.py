"""A tiny stdlib HTTP server for `muster run` tests: it serves the socket it
inherits on fd 3 and reports what muster gave it.

    muster run -w 2 -- python3 small_server.py [--notify] [--exit CODE]

Routes: `GET /` answers `ok <pid>`; `GET /env` answers a JSON object with the
worker's pid and the variables muster sets (MUSTER_WORKER_ID, LISTEN_FDS,
LISTEN_PID, LISTEN_FDNAMES, PROMETHEUS_MULTIPROC_DIR, NOTIFY_SOCKET,
WATCHDOG_USEC) and whether fd 3 is a listening socket. SIGTERM drains: the server
stops accepting, finishes the request in progress and exits 0.

`--notify` sends READY=1 (via muster_worker) once it serves; `--busy-children`
behaves like a gunicorn master with `--max-requests 1` under load, as far as `/proc`
shows: it sends READY=1, then forks inner workers one after the other that hold
the socket but are never seen waiting for a connection (each spins 0.2 s and
exits); `--watchdog-once`
sends WATCHDOG=1 once and never again (a worker whose liveness pings stop); `--exit CODE` exits
with CODE at once, without serving (a command that cannot start), and so does
`--fail-if PATH` while PATH exists (a deployment that broke the app).
"""

import json
import os
import selectors
import signal
import socket
import sys
import time
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



class Stop(Exception):
    """Raised by the TERM handler of `--busy-children` to leave its wait."""


def serve(server, stop):
    """Serves one request at a time until `stop` is set (by the TERM handler): a
    request in progress is finished first, and a wait for the next ends within
    0.2 s. The listening socket is non-blocking: when another worker took the
    connection this one was woken for, accept fails at once instead of waiting.
    (A handler that raised to leave a blocking accept could fire just after accept
    returned, dropping the connection it had taken.)"""
    server.socket.setblocking(False)
    with selectors.PollSelector() as selector:
        selector.register(server.socket, selectors.EVENT_READ)
        while not stop:
            if not selector.select(0.2):
                continue
            try:
                conn, addr = server.socket.accept()
            except BlockingIOError:
                continue
            conn.setblocking(True)
            try:
                server.process_request(conn, addr)
            except Exception:
                server.handle_error(conn, addr)
                server.shutdown_request(conn)


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


def busy_children():
    """Forks inner workers that spin 0.2 s each, until a TERM."""

    def on_term(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    try:
        while True:
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                end = time.monotonic() + 0.2
                while time.monotonic() < end:
                    pass
                os._exit(0)
            os.waitpid(pid, 0)
    except Stop:
        return 0


def main(argv):
    if "--exit" in argv:
        code = int(argv[argv.index("--exit") + 1])
        print("small_server: exiting with %d at once" % code, file=sys.stderr, flush=True)
        sys.exit(code)
    if "--fail-if" in argv and os.path.exists(argv[argv.index("--fail-if") + 1]):
        print("small_server: broken, exiting with 1", file=sys.stderr, flush=True)
        sys.exit(1)
    server = HTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=3)

    stop = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    if "--notify" in argv or "--watchdog-once" in argv or "--busy-children" in argv:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "python"))
        import muster_worker

        if "--notify" in argv or "--busy-children" in argv:
            muster_worker.mark_ready()
        if "--watchdog-once" in argv:
            muster_worker.watchdog()
        if "--busy-children" in argv:
            return busy_children()
    serve(server, stop)
    print("small_server: pid %d draining" % os.getpid(), file=sys.stderr, flush=True)
    server.server_close()
    print("small_server: pid %d drained" % os.getpid(), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
