"""A Hugging Face Hub stand-in on 127.0.0.1 that serves one file.

Enough of the hub's ``resolve`` endpoint for ``huggingface_hub.hf_hub_download``:
HEAD and GET with the commit, ETag and size headers, and ranged GETs. Run it as
``python -m tests.fakes.hub FILE REPO NAME``; it prints its port and serves until
killed.
"""

from __future__ import annotations

import hashlib
import http.server
import sys
import threading
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_handler(
    source: Path, repo: str, name: str
) -> type[http.server.BaseHTTPRequestHandler]:
    size = source.stat().st_size
    etag = hashlib.sha256(source.read_bytes()).hexdigest()
    wanted = f"/{repo}/resolve/main/{name}"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

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
            start = 0
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes="):
                start = int(ranged[6:].split("-")[0] or 0)
            self._headers(size - start, 206 if start else 200)
            with source.open("rb") as f:
                f.seek(start)
                while chunk := f.read(1 << 20):
                    self.wfile.write(chunk)

    return Handler


def serve(source: Path, repo: str, name: str) -> http.server.ThreadingHTTPServer:
    """Start serving on a free loopback port (in a thread); returns the server."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), make_handler(source, repo, name)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    hub = serve(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
    print(hub.server_address[1], flush=True)
    threading.Event().wait()
