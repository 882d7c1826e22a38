"""Ollama, Anthropic and OpenAI stand-ins on 127.0.0.1 speaking their streaming formats.

The formats follow the APIs' documentation: Ollama's ``/api/generate`` and
``/api/chat`` stream newline-delimited JSON objects ending with ``"done": true``;
Anthropic's ``/v1/messages`` streams server-sent events (``message_start``,
``content_block_delta`` with ``text_delta``, ``message_delta`` with usage,
``message_stop``); OpenAI's ``/v1/chat/completions`` and ``/v1/completions`` stream
``data:`` chunks ending with ``[DONE]``, and a last chunk with ``usage`` when asked
with ``stream_options.include_usage``. Each request takes the next scripted reply:
a stream of texts, an error status (with headers such as ``Retry-After``), a stream
that drops the connection half-way, one that pauses after some texts until resumed
(a slow answer), raw bytes (a malformed stream), or nothing at all until released (a
hung server). Every request is recorded (path, headers, JSON body).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs


@attrs.define
class Reply:
    """One scripted reply."""

    texts: list[str] = attrs.field(factory=lambda: ["ok"])
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    drop_after: int | None = None
    """Close the connection after this many text chunks (no proper end)."""
    hold: bool = False
    """Take the request and answer nothing until ``FakeApi.release`` (a hung server)."""
    pause_after: int | None = None
    """Send this many text chunks, then wait for ``FakeApi.resume`` (a slow answer)."""
    raw: list[str] | None = None
    """Send these pieces as the streamed body instead of a well-formed stream."""


@attrs.define
class Seen:
    """A request the stand-in received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeApi:
    """A threaded HTTP server with a script of replies."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.seen: list[Seen] = []
        self.log_path: str | None = None
        """Also append each request, as a JSON line, to this file."""
        self.holding = 0
        """Requests taken and not answered (``Reply.hold``) right now."""
        self.release = threading.Event()
        """Set to let held requests go on (they then get their reply)."""
        self.paused = threading.Event()
        """Set when a reply has sent its ``pause_after`` texts and waits."""
        self.resume = threading.Event()
        """Set to let paused replies send the rest."""
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"models": [], "data": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length) if length else b"{}"
                seen = Seen(self.path, dict(self.headers.items()), json.loads(raw))
                api.seen.append(seen)
                if api.log_path:
                    with open(api.log_path, "a", encoding="utf-8") as log:
                        log.write(json.dumps(attrs.asdict(seen)) + "\n")
                reply = api.script.popleft() if api.script else Reply()
                if reply.hold:
                    api.holding += 1
                    api.release.wait()
                    api.holding -= 1
                if reply.status != 200:
                    self._error(reply)
                elif reply.raw is not None:
                    pieces = ((piece.encode(), False) for piece in reply.raw)
                    self._stream(reply, pieces, "text/event-stream")
                elif self.path == "/v1/messages":
                    events = _anthropic_events(reply.texts)
                    pieces = ((event.encode(), text) for event, text in events)
                    self._stream(reply, pieces, "text/event-stream")
                elif self.path in ("/v1/chat/completions", "/v1/completions"):
                    usage = (seen.body.get("stream_options") or {}).get("include_usage")
                    self._stream(
                        reply,
                        _openai_chunks(reply.texts, self.path, bool(usage)),
                        "text/event-stream",
                    )
                elif self.path == "/api/generate":
                    self._stream(
                        reply,
                        _ollama_lines(reply.texts, "generate"),
                        "application/x-ndjson",
                    )
                elif self.path == "/api/chat":
                    self._stream(
                        reply,
                        _ollama_lines(reply.texts, "chat"),
                        "application/x-ndjson",
                    )
                else:
                    self._error(Reply(status=404, error={"message": "no such path"}))

            def _error(self, reply: Reply) -> None:
                error = reply.error or {"message": "failed"}
                if self.path.startswith("/api/"):  # Ollama: {"error": "text"}
                    body = json.dumps({"error": error.get("message", "")}).encode()
                else:  # Anthropic: {"type": "error", "error": {...}}
                    body = json.dumps({"type": "error", "error": error}).encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(
                self, reply: Reply, pieces: Iterator[tuple[bytes, bool]], kind: str
            ) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                texts = 0
                for piece, is_text in pieces:
                    if reply.pause_after is not None and texts == reply.pause_after:
                        api.paused.set()
                        api.resume.wait()
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.flush()
                    texts += is_text
                    if reply.drop_after is not None and texts >= reply.drop_after:
                        self.connection.shutdown(socket.SHUT_RDWR)  # no final chunk
                        self.close_connection = True
                        return
                self.wfile.write(b"0\r\n\r\n")

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def reply(self, *replies: Reply) -> None:
        """Queue replies for the next requests."""
        self.script.extend(replies)


def sse(name: str, data: object) -> str:
    """One server-sent event as Anthropic frames it."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def anthropic_events(texts: list[str]) -> list[str]:
    """A well-formed streamed message of ``texts`` (tests splice bad events in)."""
    return [event for event, _ in _anthropic_events(texts)]


def _anthropic_events(texts: list[str]) -> Iterator[tuple[str, bool]]:
    yield (
        sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "claude-test",
                    "usage": {"input_tokens": 25, "output_tokens": 1},
                },
            },
        ),
        False,
    )
    yield (
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        False,
    )
    yield sse("ping", {"type": "ping"}), False
    for text in texts:
        delta = {"type": "text_delta", "text": text}
        data = {"type": "content_block_delta", "index": 0, "delta": delta}
        yield sse("content_block_delta", data), True
    yield sse("content_block_stop", {"type": "content_block_stop", "index": 0}), False
    yield (
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(texts)},
            },
        ),
        False,
    )
    yield sse("message_stop", {"type": "message_stop"}), False


def _openai_chunks(
    texts: list[str], path: str, usage: bool
) -> Iterator[tuple[bytes, bool]]:
    chat = path == "/v1/chat/completions"

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": "chunk-1",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": 1764000000,
            "model": "gpt-test",
            "choices": choices,
            **({"usage": None} if usage else {}),
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n".encode()

    for text in texts:
        if chat:
            choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
        else:
            choice = {"index": 0, "text": text, "finish_reason": None}
        yield chunk([choice]), True
    last = {"index": 0, "finish_reason": "stop"}
    yield chunk([{**last, "delta": {}} if chat else {**last, "text": ""}]), False
    if usage:
        tokens = {"prompt_tokens": 30, "completion_tokens": len(texts)}
        yield chunk([], usage={**tokens, "total_tokens": 30 + len(texts)}), False
    yield b"data: [DONE]\n\n", False


def _ollama_lines(texts: list[str], kind: str) -> Iterator[tuple[bytes, bool]]:
    for text in texts:
        part: dict[str, Any] = {
            "model": "test",
            "created_at": "2026-11-24T00:00:00Z",
            "done": False,
        }
        if kind == "generate":
            part["response"] = text
        else:
            part["message"] = {"role": "assistant", "content": text}
        yield (json.dumps(part) + "\n").encode(), True
    last: dict[str, Any] = {
        "model": "test",
        "created_at": "2026-11-24T00:00:01Z",
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 30,
        "eval_count": len(texts),
    }
    if kind == "generate":
        last["response"] = ""
    else:
        last["message"] = {"role": "assistant", "content": ""}
    yield (json.dumps(last) + "\n").encode(), False


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up (as tandem does on a hung request) is not news."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextmanager
def serving() -> Iterator[FakeApi]:
    """A FakeApi serving in a thread until the block ends."""
    api = FakeApi()
    thread = threading.Thread(target=api.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.release.set()
        api.resume.set()
        api.server.shutdown()
        api.server.server_close()


def main() -> None:
    """Serve until killed: ``python -m tests.fakes.apis [SCRIPT.json [LOG.jsonl]]``.

    SCRIPT holds the replies (Reply fields as JSON objects); LOG gets every
    request. The first line printed is the server's URL.
    """
    import sys
    from pathlib import Path

    api = FakeApi()
    if len(sys.argv) > 1:
        for item in json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")):
            api.reply(Reply(**item))
    api.log_path = sys.argv[2] if len(sys.argv) > 2 else None
    print(api.url, flush=True)
    api.server.serve_forever()


if __name__ == "__main__":
    main()
