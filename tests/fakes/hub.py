"""A Hugging Face Hub stand-in on 127.0.0.1 that serves one file.

Enough of the hub's ``resolve`` endpoint for ``huggingface_hub.hf_hub_download``:
HEAD and GET with the commit, ETag and size headers, and ranged GETs. Any other
path is answered 404 and recorded (``paths``), so a test sees every request the
hub got. Run it as ``python -m tests.fakes.hub FILE REPO NAME``; it prints its port
and serves until killed.

With ``hold_after=N`` the first GET sends N bytes of the file and then holds
(``holding`` is set), trickling a byte every 20 ms, until ``release()`` or until
the client hangs up (``hung_up`` is set; a closed connection is seen before any
further byte is written). Counters: ``connections`` opened, body bytes ``served``,
GETs in progress (``active``, most at once ``max_active``).
"""

from __future__ import annotations

import hashlib
import http.server
import select
import socket
import sys
import threading
from pathlib import Path
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub(http.server.ThreadingHTTPServer):
    """The server, with what it saw."""

    daemon_threads = True

    def __init__(self, handler: Any, hold_after: int | None) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.hold_after = hold_after
        self.lock = threading.Lock()
        self.connections = 0
        self.served = 0
        self.active = 0
        self.max_active = 0
        self.gets = 0
        self.trickled = 0
        self.paths: list[str] = []
        self.holding = threading.Event()
        self.hung_up = threading.Event()
        self._release = threading.Event()

    @property
    def url(self) -> str:
        """The endpoint, for HF_ENDPOINT."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def release(self) -> None:
        """Let a held GET go on."""
        self._release.set()

    def count(self, **deltas: int) -> None:
        """Add to the counters, under the lock."""
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)
            self.max_active = max(self.max_active, self.active)


def _closed(conn: socket.socket) -> bool:
    """Whether the client hung up (readable, and nothing to read)."""
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def make_handler(
    source: Path, repo: str, name: str
) -> type[http.server.BaseHTTPRequestHandler]:
    size = source.stat().st_size
    etag = hashlib.sha256(source.read_bytes()).hexdigest()
    wanted = f"/{repo}/resolve/main/{name}"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server: Hub

        def setup(self) -> None:
            super().setup()
            self.server.count(connections=1)

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write("hub: " + format % args + "\n")

        def _headers(self, length: int, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def _check(self) -> bool:
            with self.server.lock:
                self.server.paths.append(self.path)
            if self.path.split("?")[0] != wanted:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.send_header("X-Error-Code", "EntryNotFound")
                self.end_headers()
                return False
            return True

        def do_HEAD(self) -> None:
            if self._check():
                self._headers(size)

        def do_GET(self) -> None:
            if not self._check():
                return
            hub = self.server
            hub.count(active=1, gets=1)
            try:
                self._send_file(hub)
            except (BrokenPipeError, ConnectionResetError):
                hub.hung_up.set()
            finally:
                hub.count(active=-1)

        def _send_file(self, hub: Hub) -> None:
            start = 0
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes="):
                start = int(ranged[6:].split("-")[0] or 0)
            self._headers(size - start, 206 if start else 200)
            hold = hub.hold_after if hub.gets == 1 else None
            sent = 0
            with source.open("rb") as f:
                f.seek(start)
                while chunk := f.read(1 << 16):
                    if hold is not None and sent + len(chunk) > hold:
                        f.seek(start + hold)
                        chunk, hold = chunk[: hold - sent], None
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        sent += len(chunk)
                        hub.count(served=len(chunk))
                        self._hold(hub)
                        if hub.hung_up.is_set():
                            return
                        continue
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    hub.count(served=len(chunk))

        def _hold(self, hub: Hub) -> None:
            """Trickle a byte every 20 ms (a slow link, so the client's read
            timeout never fires) until released or the client hangs up."""
            hub.holding.set()
            while not hub._release.wait(0.02):
                if _closed(self.connection):
                    hub.hung_up.set()
                    return
                self.wfile.write(b"\0")
                self.wfile.flush()
                hub.count(served=1, trickled=1)

    return Handler


def serve(source: Path, repo: str, name: str, *, hold_after: int | None = None) -> Hub:
    """Start serving on a free loopback port (in a thread); returns the server."""
    server = Hub(make_handler(source, repo, name), hold_after)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    hub = serve(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
    print(hub.server_address[1], flush=True)
    threading.Event().wait()
