"""TandemServer: the pygls server that owns settings, the engine and the backend."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import attrs
from lsprotocol import types
from pygls import uris
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument

from tandem import __version__, models, privacy
from tandem.assist.assistant import Assistant
from tandem.backends import BackendError, backend_class
from tandem.backends.llama_cpp import LlamaCppBackend, LlamaCppOptions
from tandem.config import Settings, build
from tandem.context.builder import OpenDocument
from tandem.engine import CompletionEngine, Document
from tandem.nextedit.pipeline import NextEditor, model_name_of
from tandem.protocol import TandemProtocol
from tandem.routing import Router, default_spend_path

logger = logging.getLogger(__name__)

STATUS_NOTIFICATION = "$/tandem/status"
SETTINGS_WAIT_S = 10.0


def focus_offset(doc: TextDocument, line: int, character: int) -> int:
    """The offset in ``doc`` of a reported cursor position, clamped to the text.

    ``character`` is in the negotiated position encoding; past its line's end
    it stands for that end, and a line past the last is the document's end.
    """
    lines = doc.lines
    line = max(0, min(line, len(lines)))
    offset = sum(len(x) for x in lines[:line])
    if character > 0 and line < len(lines):
        end = offset + len(lines[line].rstrip("\r\n"))
        at = types.Position(line=line, character=character)
        offset = min(doc.offset_at_position(at), end)
    return offset


class TandemServer(LanguageServer):
    """The tandem-ls language server."""

    protocol: TandemProtocol

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(
            name="tandem-ls",
            version=__version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=TandemProtocol,
        )
        self.settings = settings or Settings()
        self.initialization_options: Any = None
        self.router = Router(default_spend_path())
        self.router.notify = lambda message: self.show_once(f"tandem: {message}")
        self.router.changed = self.notify_status
        self.router.roots = self.folder_paths
        self.engine = CompletionEngine(self.router.view("completion"))
        self.assistant = Assistant(self.engine)
        self.assistant.backend_for = self.router.view  # type: ignore[assignment]
        self.model_state = "not loaded"
        """One of: not loaded, downloading, loading, ready, unavailable."""
        self.model_message = ""
        self._backend_config: tuple[Any, ...] | None = None
        self._backend_task: asyncio.Task[None] | None = None
        self._index_task: asyncio.Task[None] | None = None
        self.index_stats: dict[str, Any] = {}
        self.recent_edits: dict[str, collections.deque[int]] = {}
        self.engine.open_documents = self.open_documents
        self.next_edit = NextEditor(self.engine)
        """Next-edit prediction and the edit history it reads (fed by didChange)."""
        self.next_edit.model_name = lambda: model_name_of(self.router.local)
        self.experimental: dict[str, Any] = {}
        """Advertised under ``experimental`` in the initialize result."""
        if speed := os.environ.get("TANDEM_SPEED"):
            self._pin_speed(speed)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shown: set[str] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        """The server's event loop, for work that reports back from threads."""
        self.settings_applied = asyncio.Event()
        """Set once the settings from the client have been applied."""

    def _pin_speed(self, speed: str) -> None:
        """``TANDEM_SPEED=PROMPT/GENERATED`` (tokens/s): behave as on that machine."""
        try:
            prompt, generated = (float(x) for x in speed.split("/"))
            if prompt <= 0 or generated <= 0:
                raise ValueError(speed)
        except ValueError:
            logger.warning("TANDEM_SPEED=%r: expected PROMPT/GENERATED tokens/s", speed)
            return
        self.engine.meter.pin(prompt, generated)

    # -- background work -----------------------------------------------------

    def run_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, keeping a reference and logging errors."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finish_task)
        return task

    def _finish_task(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("background task failed", exc_info=exc)

    # -- documents -------------------------------------------------------------

    def document(self, uri: object) -> TextDocument:
        """The open document ``uri``; InvalidParams for one the client never opened.

        (pygls would read a file of that name from disk instead.)
        """
        if not isinstance(uri, str) or uri not in self.workspace.text_documents:
            raise JsonRpcInvalidParams(message=f"document not open: {uri!r}")
        return self.workspace.get_text_document(uri)

    # -- messages --------------------------------------------------------------

    def show_once(
        self, message: str, kind: types.MessageType = types.MessageType.Warning
    ) -> None:
        """``window/showMessage``, once per distinct message per session."""
        if message in self._shown:
            return
        self._shown.add(message)
        logger.warning("%s", message)
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Log errors; don't pop up a message for each failed notification."""
        logger.error(
            "server error (%s): %s", getattr(source, "__name__", source), error
        )

    @contextlib.asynccontextmanager
    async def work_done(
        self, title: str, *, cancellable: bool = False
    ) -> AsyncIterator[Callable[[str, int | None], None]]:
        """A ``$/progress`` work-done report, if the client supports it.

        With ``cancellable``, the client's cancel button cancels the task that
        entered this context.
        """
        caps = self.client_capabilities.window
        if caps is None or not caps.work_done_progress:
            yield lambda message, percentage: None
            return
        token = str(uuid.uuid4())
        try:
            await self.work_done_progress.create_async(token)
        except Exception:  # the client refused: carry on without progress
            logger.debug("work done progress refused", exc_info=True)
            yield lambda message, percentage: None
            return

        def report(message: str, percentage: int | None = None) -> None:
            self.work_done_progress.report(
                token,
                types.WorkDoneProgressReport(message=message, percentage=percentage),
            )

        self.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title=title, cancellable=cancellable)
        )
        task = asyncio.current_task()
        cancelled = self.work_done_progress.tokens.get(token)
        if cancellable and task is not None and cancelled is not None:
            loop = asyncio.get_running_loop()
            cancelled.add_done_callback(
                lambda f: (
                    loop.call_soon_threadsafe(task.cancel) if f.cancelled() else None
                )
            )
        try:
            yield report
        finally:
            self.work_done_progress.tokens.pop(token, None)
            self.work_done_progress.end(token, types.WorkDoneProgressEnd())

    # -- settings and the backend -----------------------------------------------

    async def apply_settings(self, *layers: Any) -> None:
        """Rebuild settings from the layers; restart the backend if its part changed."""
        settings, errors = build(self.initialization_options, *layers)
        if errors:
            self.show_once(
                "tandem: invalid settings, using defaults for: " + "; ".join(errors)
            )
        old = self.settings
        self.settings = settings
        await self.router.configure(settings)
        if self.settings_applied.is_set() and settings.context != old.context:
            self.start_index()
        self.settings_applied.set()
        if settings.completion != old.completion:
            self.engine.cache.clear()
        config = (settings.backend, settings.local, _needs_local(settings))
        # Going offline changes nothing for a model that is loaded; it does stop
        # a download, and going online may allow one.
        offline_matters = (
            settings.offline != old.offline and self.model_state != "ready"
        )
        if config != self._backend_config or offline_matters:
            self._backend_config = config
            self.engine.cache.clear()
            self.start_backend()
        elif settings != old:
            self.notify_status()

    def start_backend(self) -> None:
        """(Re)start the backend in the background; requests wait for it.

        One load or download at a time: the new start cancels the one under way
        and waits until it has stopped and closed what it was loading.
        """
        previous = self._backend_task
        if previous is not None:
            previous.cancel()
        self._backend_task = self.run_task(self._start_backend(self.settings, previous))

    async def wait_for_settings(self) -> None:
        """Wait for the client's settings (not for long: some never send them)."""
        if not self.settings_applied.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.settings_applied.wait(), SETTINGS_WAIT_S)

    async def wait_for_backend(self) -> None:
        """Wait for the client's settings and a model load under way.

        A download is not waited for: it takes minutes, and progress shows it.
        """
        await self.wait_for_settings()
        if self.model_state == "downloading":
            return
        task = self._backend_task
        if task is not None and not task.done():
            await asyncio.wait({task})  # not shield: a restart cancels the task

    async def _start_backend(
        self, settings: Settings, previous: asyncio.Task[None] | None = None
    ) -> None:
        cancelled = False
        while previous is not None and not previous.done():
            try:  # even when cancelled meanwhile: never two loads at once
                await asyncio.wait({previous})
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        models.hub_offline()  # huggingface_hub never goes online in this process
        old, self.router.local = self.router.local, None
        self.router.local_problem = "the model is not loaded yet"
        if old is not None:
            await old.aclose()
        if not _needs_local(settings):
            self.router.local_problem = "no routing chain uses the local model"
            self._set_state("not used", "no routing chain uses the local model")
            return
        if settings.backend != "llama_cpp":
            self.router.local = backend_class(settings.backend)()
            self._set_state("ready", f"{settings.backend} backend")
            return
        resolution = await asyncio.to_thread(
            models.resolve, settings.local, offline=settings.offline
        )
        path = resolution.path
        if resolution.needs_download:
            path = await self._download(settings)
        if path is None:
            return self._unavailable(resolution.message)
        backend = LlamaCppBackend(
            LlamaCppOptions.from_settings(settings.local, str(path))
        )
        self._set_state("loading", path.name)
        try:
            async with self.work_done(f"tandem: loading {path.name}") as report:
                report("loading model", None)
                await backend.load()
        except BackendError as e:
            await backend.aclose()
            return self._unavailable(str(e))
        except BaseException:  # cancelled (settings changed, shutdown): free it
            closing = self.run_task(backend.aclose())
            while not closing.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({closing})
            raise
        self.router.local = backend
        self._set_state("ready", path.name)

    async def _download(self, settings: Settings) -> Any:
        """The default model, downloaded by a child process (None: failed).

        Cancelling this task (going offline, a settings change, shutdown) kills
        the child; so does the network being found unreachable (auto-offline).
        """
        self._set_state("downloading", settings.local.model_file)
        task = asyncio.current_task()
        changed = self.router.changed
        lost: list[bool] = []

        def on_change() -> None:
            changed()
            if self.router.offline and task is not None and not lost:
                lost.append(True)
                task.cancel()

        self.router.changed = on_change
        try:
            async with self.work_done(
                f"tandem: downloading {settings.local.model_file}"
            ) as report:

                def on_bytes(done: int, total: int | None) -> None:
                    pct = int(done * 100 / total) if total else None
                    msg = f"{done / 1e6:.0f} MB" + (
                        f" of {total / 1e6:.0f} MB" if total else ""
                    )
                    report(msg, pct)

                return await models.download_process(settings.local, on_bytes)
        except asyncio.CancelledError:
            if task is None or not lost or task.uncancel() > 0:
                raise
            self._unavailable(
                f"Stopped downloading {settings.local.model_file}: the network is "
                "unreachable. Set tandem.local.modelPath (or TANDEM_MODEL) to a "
                "local .gguf file, or change a setting to try again."
            )
            return None
        except Exception as e:  # network down, hub unreachable, disk full
            logger.warning("model download failed: %s", e)
            self._unavailable(
                f"Could not download {settings.local.model_file} from "
                f"{settings.local.model_repo} ({type(e).__name__}). Set "
                "tandem.local.modelPath (or TANDEM_MODEL) to a local .gguf file."
            )
            return None
        finally:
            self.router.changed = changed

    def _unavailable(self, message: str) -> None:
        self.router.local_problem = message
        self._set_state("unavailable", message)
        self.show_once(f"tandem: {message}")

    def _set_state(self, state: str, message: str) -> None:
        self.model_state = state
        self.model_message = message
        logger.info("model %s: %s", state, message)
        self.notify_status()

    def notify_status(self) -> None:
        """Tell the client the status changed (``$/tandem/status``)."""
        self.protocol.notify(STATUS_NOTIFICATION, self.status())

    def status(self) -> dict[str, Any]:
        """The state clients show: backend, model, offline, counters."""
        backend = self.router.local
        info = getattr(backend, "info", None)
        counters = getattr(backend, "counters", None)
        model = self.model_state
        if info is not None:
            where = "GPU" if info.gpu_offload else f"CPU, {info.n_threads} threads"
            model = f"{info.name} ({Path(info.path).name}, {where}): {model}"
        elif self.model_message:
            model = f"{model}: {self.model_message}"
        engine = self.engine
        stats = engine.stats
        routing = self.router.status()
        offline = routing["offline"]
        chains = ", ".join(
            f"{task} {'>'.join(chain)}" for task, chain in routing["chains"].items()
        )
        summary = [
            f"tandem-ls {__version__}, local backend {self.settings.backend}"
            + (", offline" if offline is True else "")
            + (", offline (network unreachable)" if offline == "auto" else ""),
            f"model: {model}",
            f"completions: {stats.requests} requests, {stats.cache_hits} from cache, "
            f"{stats.generations_completed} generated, "
            f"{stats.generations_cancelled} cancelled, {stats.reused} reused "
            f"in flight, {stats.prefetch_hits} prefetched",
            f"routing: {chains}; escalation "
            + (
                f"to {routing['escalateTo']}"
                if routing["escalation"]
                else f"off ({routing['escalationRefusal']})"
            )
            + f"; spent today ${routing['spendTodayUsd']:.2f} of "
            f"${routing['dailySpendCapUsd']:.2f}",
        ]
        return {
            "summary": summary,
            "version": __version__,
            "pid": os.getpid(),
            "backend": self.settings.backend,
            "offline": offline,
            "routing": routing,
            "model": {
                "state": self.model_state,
                "message": self.model_message,
                **(attrs.asdict(info) if info is not None else {}),
            },
            "stats": attrs.asdict(self.engine.stats),
            "actions": attrs.asdict(self.assistant.stats),
            "nextEdit": attrs.asdict(self.next_edit.stats),
            "backendCounters": attrs.asdict(counters) if counters else {},
            "index": {**self.index_stats, "indexed": len(self.engine.index)},
            "settings": attrs.asdict(self.settings),
            "cache": {
                "hits": self.engine.cache.hits,
                "misses": self.engine.cache.misses,
            },
            "latency": {
                "debounce": engine.debouncer.status(),
                "speed": engine.meter.status(),
                "contextBudget": engine.context_budget,
                "contextBudgetWhy": engine.budget_reason,
                "contextFloor": self.settings.context.floor_tokens,
                "windowTokens": engine.window_cap,
                "suffixTokens": engine.suffix_cap,
                "moreLinesTokens": engine.more_lines_tokens,
                "moreLinesWhy": (
                    "a completion with a whole line stops after this many generated "
                    "tokens (completion.moreLinesMs at the measured speed); "
                    "accepting it shows the lines after it"
                ),
                "scheduler": engine.scheduler.status(),
                "contextChangeRate": engine.changes.rate,
                "targetMs": self.settings.completion.latency_target_ms,
                "inFlight": engine.in_flight(),
            },
            "suggestions": list(engine.suggestions),
            "process": {
                "tasks": len(asyncio.all_tasks()),
                "threads": threading.active_count(),
                "pyBlocks": sys.getallocatedblocks(),
            },
        }

    # -- workspace index -------------------------------------------------------

    def folder_paths(self) -> list[str]:
        """The workspace folders as the client declared them (privacy rules)."""
        paths = [uris.to_fs_path(f.uri) for f in self.workspace.folders.values()]
        if not paths and self.workspace.root_path:
            paths = [self.workspace.root_path]
        return [p for p in paths if p]

    def workspace_roots(self) -> list[Path]:
        """The workspace folders on disk."""
        roots = [
            Path(uris.to_fs_path(f.uri) or "") for f in self.workspace.folders.values()
        ]
        if not roots and self.workspace.root_path:
            roots = [Path(self.workspace.root_path)]
        return [r for r in roots if str(r) and r.is_dir()]

    def start_index(self) -> None:
        """Index the workspace in the background (a restart cancels the last run)."""
        settings = self.settings.context
        roots = self.workspace_roots()
        self.engine.roots = [str(r) for r in roots]
        self.engine.repo = roots[0].name if roots else None
        index = self.engine.index
        index.max_file_bytes = settings.max_file_bytes
        index.max_files = settings.max_files
        if self._index_task is not None:
            self._index_task.cancel()
        if settings.enabled and settings.index_workspace and roots:
            self._index_task = self.run_task(self._build_index(roots))

    async def _build_index(self, roots: list[Path]) -> None:
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        started = time.perf_counter()
        try:
            async with self.work_done("tandem: indexing the workspace") as report:

                def progress(done: int, total: int) -> None:
                    pct = int(done * 100 / total) if total else None
                    loop.call_soon_threadsafe(report, f"{done}/{total} files", pct)

                count = await asyncio.to_thread(
                    self.engine.index.build, roots, progress, stop.is_set
                )
        finally:
            stop.set()  # a cancelled task stops the worker thread too
        self.index_stats = {
            "files": count,
            "skipped": self.engine.index.skipped,
            "seconds": round(time.perf_counter() - started, 2),
        }
        logger.info("indexed %d files in %.1f s", count, self.index_stats["seconds"])
        self.protocol.notify(STATUS_NOTIFICATION, self.status())

    def snapshot(self, uri: str) -> tuple[TextDocument, Document]:
        """An open document and the engine's immutable snapshot of it."""
        doc = self.document(uri)
        path = doc.path
        rel: str | None = None
        if path:
            rel = Path(path).name
            if root := self.workspace.root_path:
                with contextlib.suppress(ValueError):
                    rel = Path(path).relative_to(root).as_posix()
        snapshot = Document(uri, doc.source, doc.language_id or "", rel, path or None)
        return doc, snapshot

    async def warm_document(
        self, uri: str, line: int | None = None, character: int = 0
    ) -> None:
        """Warm a document's prompt in idle time (opened or focused).

        At the cursor the editor reports (``line``, ``character`` in the
        negotiated position encoding): the prompt a completion asked there gets,
        the text after the cursor included. Without a cursor line (a plain
        ``didOpen``, a ``didFocus`` without a position), the guess is the end of
        the document's first window, where editors put the cursor of a newly
        opened file (any position in a file shorter than ``prefixChars`` shares
        it), and the prompt up to there.
        """
        await self.wait_for_backend()
        settings = self.settings
        if not settings.completion.enabled or not settings.completion.warm_up:
            return
        try:
            doc, snapshot = self.snapshot(uri)
        except JsonRpcInvalidParams:
            return  # closed meanwhile
        text = snapshot.text
        if line is None:
            offset = min(len(text), settings.completion.prefix_chars)
            offset = text.rfind("\n", 0, offset) + 1 if offset < len(text) else offset
        else:
            offset = focus_offset(doc, line, character)
        self.engine.warm_soon(
            snapshot,
            offset,
            settings.completion,
            settings.context,
            at_cursor=line is not None,
        )

    def note_edit(self, uri: str, lines: list[int]) -> None:
        """Remember where a document was just edited (most recent first)."""
        recent = self.recent_edits.setdefault(uri, collections.deque(maxlen=8))
        recent.extendleft(lines)

    def open_documents(self) -> list[OpenDocument]:
        """Open documents with their recent edits, for the context builder."""
        docs = []
        for uri, doc in list(self.workspace.text_documents.items()):
            if doc.path and len(doc.source) <= self.settings.context.max_file_bytes:
                edited = tuple(self.recent_edits.get(uri, ()))
                docs.append(OpenDocument(doc.path, doc.source, edited))
        return docs

    def index_document(self, path: str | None, text: str, language_id: str) -> None:
        """Keep an open or saved document's definitions current."""
        context = self.settings.context
        if len(text) <= context.max_file_bytes or (
            path
            and privacy.never_send(
                path, self.settings.privacy.never_send, self.engine.roots
            )
        ):
            # Its secrets are redacted from any window cut from it later.
            self.run_task(asyncio.to_thread(privacy.learn, text))
        if path and context.enabled and len(text) <= context.max_file_bytes:
            self.engine.index.update(path, text, language_id)

    async def files_changed(self, changes: Sequence[types.FileEvent]) -> None:
        """Files created, changed or deleted outside the editor."""
        index = self.engine.index
        for change in changes:
            path = uris.to_fs_path(change.uri)
            if not path:
                continue
            if change.type == types.FileChangeType.Deleted:
                index.remove(path)
            elif change.uri not in self.workspace.text_documents:  # open: ours
                await asyncio.to_thread(index.update_from_disk, Path(path))

    async def aclose(self) -> None:
        """Stop background work and free the model."""
        if self._index_task is not None:
            self._index_task.cancel()
        if self._backend_task is not None:
            self._backend_task.cancel()  # kills a download, frees a loading model
            await asyncio.wait({self._backend_task})
        await self.engine.aclose()
        await self.router.aclose()
        local, self.router.local = self.router.local, None
        if local is not None:
            await local.aclose()


def _needs_local(settings: Settings) -> bool:
    """Whether any routing chain uses the in-process backend."""
    routing = settings.routing
    return "local" in (*routing.completion, *routing.explain, *routing.refactor)


def create_server(settings: Settings | None = None) -> TandemServer:
    """A new server with every feature registered (order matters)."""
    from tandem.features import (
        actions,
        commands,
        completion,
        documents,
        lifecycle,
        nextedit,
    )

    server = TandemServer(settings)
    for feature in (lifecycle, documents, completion, commands, actions, nextedit):
        feature.register(server)
    return server
