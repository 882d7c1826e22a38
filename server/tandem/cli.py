"""Command line: serve LSP over stdio or TCP, or complete one position."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

import attrs

from tandem import __version__, log, models
from tandem.backends import BackendError
from tandem.config import Settings, build

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem-ls",
        description="Local-first AI code completion as a language server.",
    )
    parser.add_argument(
        "--version", action="version", version=f"tandem-ls {__version__}"
    )
    parser.add_argument("--tcp", metavar="HOST:PORT", help="serve over TCP, not stdio")
    parser.add_argument(
        "--stdio",
        action="store_true",
        help="serve over stdin/stdout (the default; editors' clients pass it)",
    )
    parser.add_argument("--log-file", metavar="PATH", help="log here instead of stderr")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v info, -vv debug"
    )
    sub = parser.add_subparsers(dest="command")
    complete = sub.add_parser(
        "complete",
        help="print the completion at FILE:LINE:COL (1-based) and exit",
        description="Print the completion at FILE:LINE:COL (1-based line and "
        "column, counted in characters) using the server's own engine.",
    )
    complete.add_argument("location", metavar="FILE:LINE:COL")
    complete.add_argument("--model", metavar="PATH", help="GGUF model to use")
    complete.add_argument("--max-tokens", type=int, default=None)
    complete.add_argument(
        "--json", action="store_true", help="print the completion with its stats"
    )
    doctor = sub.add_parser(
        "doctor", help="check the installation, the GPU build and the model"
    )
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.add_argument(
        "--model",
        metavar="PATH",
        help="check this GGUF (FIM family from its vocabulary, fit) instead of "
        "the configured model",
    )
    doctor.add_argument(
        "--settings", metavar="JSON", help="the editor's tandem settings section"
    )
    key = sub.add_parser(
        "key",
        help="store an API key in the system keyring",
        description="Store, check or remove a cloud backend's API key in the system "
        "keyring (used when its environment variable is not set). The key is read "
        "from the terminal without echo, or from stdin.",
    )
    key.add_argument("action", choices=("set", "delete", "where"))
    key.add_argument("backend", choices=KEYED_BACKENDS)
    return parser


KEYED_BACKENDS = ("anthropic", "openai")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tandem-ls`` and ``python -m tandem``."""
    args = _parser().parse_args(argv)
    log.setup(args.verbose, args.log_file)
    if args.command == "complete":
        return _complete(args)
    if args.command == "doctor":
        from tandem import doctor

        try:
            layer = json.loads(args.settings) if args.settings else None
        except json.JSONDecodeError as e:
            raise SystemExit(f"tandem-ls: --settings is not JSON: {e}") from None
        settings, errors = build(layer)
        model = Path(args.model) if args.model else None
        found = doctor.report(settings, model=model)
        found["settings_errors"] = errors
        print(json.dumps(found, indent=2) if args.json else doctor.text(found))
        return 0 if found["llama_cpp"]["installed"] and found["model"]["found"] else 1
    if args.command == "key":
        return _key(args.action, args.backend)
    return _serve(args)


def _key(action: str, backend: str) -> int:
    """``tandem-ls key set|delete|where BACKEND``; never prints the key."""
    from tandem import keys
    from tandem.backends.openai_compat import key_env

    settings, _ = build(None)
    env = (
        key_env(settings.openai)
        if backend == "openai"
        else settings.anthropic.api_key_env
    )
    try:
        if action == "where":
            print(f"{backend}: {keys.where(env, backend)}")
        elif action == "delete":
            gone = keys.delete(backend)
            print(f"{backend}: " + ("key removed" if gone else "no key was stored"))
        else:
            if sys.stdin.isatty():
                import getpass

                secret = getpass.getpass(f"{backend} API key (not shown): ")
            else:
                secret = sys.stdin.readline()
            if not secret.strip():
                print("tandem-ls: no key given; nothing stored", file=sys.stderr)
                return 1
            keys.store(backend, secret)
            print(f"{backend}: key stored in the system keyring")
    except keys.KeyringUnavailable as e:
        print(f"tandem-ls: {e}", file=sys.stderr)
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tandem.log import LspLogHandler
    from tandem.server import create_server

    server = create_server()
    logging.getLogger("tandem").addHandler(LspLogHandler(server))
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        server.start_io()
    return 0


def _location(text: str) -> tuple[Path, int, int]:
    try:
        path, line, col = text.rsplit(":", 2)
        return Path(path), int(line), int(col)
    except ValueError:
        raise SystemExit(f"tandem-ls: expected FILE:LINE:COL, got {text!r}") from None


def offset_of(text: str, line: int, col: int) -> int:
    """Offset of the 1-based (line, column); the column is clamped to the line."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise SystemExit(f"tandem-ls: line {line} is outside 1..{len(lines)}")
    start = sum(len(ln) + 1 for ln in lines[: line - 1])
    return start + max(0, min(col - 1, len(lines[line - 1])))


def _complete(args: argparse.Namespace) -> int:
    from tandem.backends.llama_cpp import LlamaCppBackend, LlamaCppOptions
    from tandem.engine import CompletionEngine, Document

    path, line, col = _location(args.location)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        print(f"tandem-ls: cannot read {path}: {e}", file=sys.stderr)
        return 2
    settings = Settings()
    local = settings.local
    if args.model:
        local = attrs.evolve(local, model_path=args.model)
    resolution = models.resolve(local, offline=settings.offline)
    model = resolution.path
    if resolution.needs_download:
        print(f"tandem-ls: {resolution.message}", file=sys.stderr)
        try:
            model = models.download(local)
        except Exception as e:
            print(f"tandem-ls: download failed: {e}", file=sys.stderr)
    if model is None:
        print(f"tandem-ls: {resolution.message or 'no model'}", file=sys.stderr)
        return 2
    completion = attrs.evolve(settings.completion, debounce_ms=0)
    if args.max_tokens:
        completion = attrs.evolve(completion, max_tokens=args.max_tokens)
    backend = LlamaCppBackend(
        LlamaCppOptions(model_path=str(model), fim_format=local.fim_format)
    )
    language = {".py": "python", ".js": "javascript", ".ts": "typescript"}.get(
        path.suffix, ""
    )
    doc = Document(path.resolve().as_uri(), text, language, path.name)

    async def run() -> int:
        engine = CompletionEngine(backend)
        try:
            result = await engine.complete(doc, offset_of(text, line, col), completion)
        except BackendError as e:
            print(f"tandem-ls: {e}", file=sys.stderr)
            return 2
        finally:
            await engine.aclose()
        assert result is not None
        if args.json:
            out = {
                "completion": result.text,
                "raw": result.raw,
                "latency_ms": round(result.latency_ms, 1),
                "model": str(model),
                "stats": attrs.asdict(result.stats) if result.stats else None,
            }
            print(json.dumps(out, indent=2))
        else:
            sys.stdout.write(result.text + "\n")
        return 0

    return asyncio.run(run())
