"""Settings: one frozen attrs tree with defaults, built from client JSON. No I/O.

Precedence, lowest first: the defaults here < ``initializationOptions`` <
``workspace/configuration`` section ``tandem`` (pulled after ``initialized`` and on
every ``workspace/didChangeConfiguration``) < the ``TANDEM_MODEL`` environment
variable for the model path.

Keys arrive in camelCase (``debounceMs``) or snake_case. Values are checked strictly
(``"false"`` is not a bool): an invalid value is reported and that one field keeps its
default; the rest of the settings still apply.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs

DEFAULT_MODEL_REPO = "TheBloke/CodeLlama-7B-GGUF"
DEFAULT_MODEL_FILE = "codellama-7b.Q4_K_M.gguf"


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"must be positive, got {value}")


def _non_negative(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"must be zero or more, got {value}")


@attrs.frozen
class LocalSettings:
    """The in-process llama.cpp backend."""

    model_path: str = ""
    """Path to a GGUF model. Empty: the default model (see modelRepo/modelFile)."""
    model_repo: str = DEFAULT_MODEL_REPO
    """Hugging Face repository of the default model."""
    model_file: str = DEFAULT_MODEL_FILE
    """File in modelRepo: CodeLlama-7B (code), Q4_K_M, about 4 GB."""
    allow_download: bool = True
    """Download the default model with huggingface_hub when it is not cached."""
    n_gpu_layers: int | None = None
    """Layers to offload to the GPU; null: all of them when the build supports it."""
    n_threads: int | None = attrs.field(default=None, validator=_positive)
    """CPU threads; null: the CPUs available to the server (at most 16)."""
    n_ctx: int = attrs.field(default=4096, validator=_positive)
    """Context window in tokens."""
    fim_format: str = attrs.field(
        default="auto",
        validator=attrs.validators.in_(
            ("auto", "none", "qwen", "codegemma", "starcoder", "codellama", "deepseek")
        ),
    )
    """FIM prompt format: auto (from the model's vocabulary), a family, or none."""
    prompt_chunk: int = attrs.field(default=128, validator=_positive)
    """Prompt tokens evaluated between two checks for cancellation (any GPU too)."""
    prefix_cache_mb: int = attrs.field(default=256, validator=_non_negative)
    """Memory for the KV prefixes of recently used documents, so switching files
    does not re-evaluate them; 0 turns it off."""
    cache_reuse: int = attrs.field(default=0, validator=_non_negative)
    """Off (0) by default. Otherwise the shortest run of cached tokens moved to
    its new place in a FIM prompt that changed before the text just before the
    cursor (the context as the cursor reached ``expr.``, the window's first
    lines, a line above the cursor), instead of evaluated again: llama.cpp
    shifts their positions, as llama-server's --cache-reuse. The last 32
    tokens before the cursor and the text after it are always evaluated again.
    An approximation: the moved entries were computed after the old text
    before them; on real code the first line of the completion then differed
    from a fresh evaluation's in 4 to 7 cases of 24."""
    flash_attention: bool | None = None
    """llama.cpp's flash attention: null (default) uses it when the model runs on
    the CPU (prompts evaluate ~10% faster on a 2-core CPU) and not with GPU
    offload (not measured there); true or false decides. Loaded without it if
    llama.cpp cannot create a context with it."""


@attrs.frozen
class CompletionSettings:
    """Inline and list completions."""

    enabled: bool = True
    """Offer inline (ghost text) and list completions."""
    debounce_ms: int = attrs.field(default=50, validator=_non_negative)
    """Wait this long for more typing before generating (a newer request cancels)."""
    max_tokens: int = attrs.field(default=96, validator=_positive)
    """Most tokens generated for one completion."""
    max_lines: int = attrs.field(default=12, validator=_positive)
    """Most lines of one completion."""
    multiline: bool = True
    """Allow completions of several lines where the cursor ends a line."""
    more_lines_ms: int = attrs.field(default=500, validator=_non_negative)
    """Once a completion has a whole line, stop generating more lines after about
    this long (the tokens this many ms generate at the measured speed): a slow
    machine shows the first line sooner, and accepting it shows the lines after
    it (prefetched). 0: no limit but maxTokens and maxLines."""
    temperature: float = attrs.field(default=0.0, validator=_non_negative)
    """Sampling temperature; 0 picks the likeliest token (steady suggestions)."""
    prefix_chars: int = attrs.field(default=4000, validator=_positive)
    """Text before the cursor given to the model, at most."""
    suffix_chars: int = attrs.field(default=400, validator=_non_negative)
    """Text after the cursor given to FIM models, at most. Kept short: in FIM order
    it follows the prefix, so it is evaluated again after every keystroke."""
    postprocess: bool = True
    """Trim completions to the current block, drop repeats and unbalanced brackets."""
    adaptive_debounce: bool = True
    """Wait after a keystroke as the typing rhythm and response times suggest
    (between debounceMinMs and debounceMaxMs) instead of a fixed debounceMs."""
    debounce_min_ms: int = attrs.field(default=10, validator=_non_negative)
    """Shortest wait of the adaptive debounce."""
    debounce_max_ms: int = attrs.field(default=300, validator=_non_negative)
    """Longest wait of the adaptive debounce."""
    cache: bool = True
    """Answer from recent completions the user is typing through."""
    reuse_in_flight: bool = True
    """Keep a generation running while the user types what it is producing, and
    serve the rest of it, instead of starting over."""
    prefetch: bool = True
    """After a completion, compute the one that follows it (cancelled by any
    request), so accepting and going on is instant."""
    latency_target_ms: int = attrs.field(default=800, validator=_non_negative)
    """Size the workspace context so that a completion after one keystroke takes
    about this long at the speed measured on this machine (0: always use
    context.budgetTokens)."""
    warm_up: bool = True
    """Evaluate a document's prompt (context, the text before the cursor, and
    where the editor reported the cursor the text after it) in idle time when it
    is opened or focused, so its first completion does not start cold.
    In-process model only; any request comes first."""
    grow_window: bool = False
    """On a machine too slow for all of prefixChars in a cold prompt, evaluate
    that longer window in idle time (after a warm-up at the cursor, or a
    completion and a second with no request) and give it to the completions
    after it where it costs them no more. Off: on real packages it changed no
    measured score beyond noise, and it costs idle CPU (see README). Needs
    warmUp and local.prefixCacheMb; in-process model only."""


@attrs.frozen
class ContextSettings:
    """Workspace context: definitions from other files, found with tree-sitter."""

    enabled: bool = True
    """Give the model definitions from other files of the workspace."""
    budget_tokens: int = attrs.field(default=512, validator=_non_negative)
    """Most prompt tokens spent on other files' definitions (model tokenizer)."""
    floor_tokens: int = attrs.field(default=384, validator=_non_negative)
    """Tokens the definitions the cursor directly depends on (the modules and
    classes the file imports, what the cursor line's ``expr.`` refers to) always
    get, however slow the model: a slower machine shrinks the rest first."""
    index_workspace: bool = True
    """Index the workspace folders in the background at start-up."""
    open_documents: bool = True
    """Also use similar code and recently edited regions of other open documents."""
    max_file_bytes: int = attrs.field(default=1_000_000, validator=_positive)
    """Files larger than this are not indexed."""
    max_files: int = attrs.field(default=20_000, validator=_positive)
    """Most files indexed per workspace folder."""


@attrs.frozen
class ActionSettings:
    """Explain and refactor code actions."""

    enabled: bool = True
    """Offer Explain and refactor code actions."""
    hover: bool = False
    """Explain the symbol under the mouse on hover (a model call: slow on a CPU)."""
    explain_max_tokens: int = attrs.field(default=400, validator=_positive)
    """Most tokens of one explanation."""
    max_lines: int = attrs.field(default=200, validator=_positive)
    """Largest piece of code (in lines) to explain or rewrite."""
    retries: int = attrs.field(default=1, validator=_non_negative)
    """Further attempts when a rewrite fails its checks (parse, range)."""
    context_budget_tokens: int = attrs.field(default=768, validator=_non_negative)
    """Prompt tokens for definitions from other files that the code uses."""


@attrs.frozen
class NextEditSettings:
    """Next-edit suggestions: the change the user will likely make next."""

    enabled: bool = True
    """Predict the next edit from the recent edits (served on
    ``textDocument/copilotInlineEdit``; clients show it where it goes)."""
    format: str = attrs.field(
        default="auto",
        validator=attrs.validators.in_(("auto", "sweep", "zeta", "chat")),
    )
    """Prompt format: ``sweep`` (Sweep next-edit models), ``zeta`` (Zed's Zeta),
    ``chat`` (an instruct model, e.g. Qwen2.5-Coder-Instruct); ``auto`` picks from
    the model's name."""
    lines_before: int = attrs.field(default=1, validator=_non_negative)
    """Lines above the cursor (or the latest edit) the model may rewrite."""
    lines_after: int = attrs.field(default=8, validator=_non_negative)
    """Lines below the cursor (or the latest edit) the model may rewrite."""
    max_tokens: int = attrs.field(default=256, validator=_positive)
    """Most tokens generated for one prediction."""
    min_confidence: float = attrs.field(default=0.6, validator=_non_negative)
    """Show a prediction only when its confidence reaches this: the geometric
    mean of how well the change follows the user's edit (0.9 the same rename
    elsewhere, 0.6 a one-line change using a word just typed, 0.3 anything
    else) and the geometric mean probability of the tokens that wrote it (the
    in-process model reports them). At 0.6 only changes that carry on the
    user's edit can pass; the model's certainty then decides."""
    history_edits: int = attrs.field(default=6, validator=_positive)
    """Recent edits (per document and of other open documents) in the prompt."""
    group_ms: int = attrs.field(default=1500, validator=_non_negative)
    """Keystrokes closer than this, in the same place, make one edit."""


DEFAULT_NEVER_SEND = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.kdbx",
    "id_rsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    ".npmrc",
    ".pypirc",
    "credentials*",
    "secrets/",
    ".secrets/",
    ".ssh/",
)
"""Files (gitignore patterns) never put into a prompt for a non-local backend."""

NETWORK_BACKENDS = ("ollama", "openai", "anthropic")
ROUTE_NAMES = ("local", *NETWORK_BACKENDS)


def _route(_inst: object, attr: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("must name at least one backend")
    for name in value:
        if name not in ROUTE_NAMES:
            raise ValueError(
                f"unknown backend {name!r}; known: {', '.join(ROUTE_NAMES)}"
            )


@attrs.frozen
class OllamaSettings:
    """An Ollama server (``ollama serve``)."""

    host: str = "http://127.0.0.1:11434"
    """Address of the Ollama server."""
    model: str = "qwen2.5-coder:1.5b"
    """Model for completions (FIM through Ollama's ``suffix``)."""
    chat_model: str = ""
    """Model for explain and refactor; empty: ``model``."""
    timeout_s: float = attrs.field(default=30.0, validator=_positive)
    """Seconds to wait for an answer before the next backend serves."""


@attrs.frozen
class OpenAISettings:
    """An OpenAI-compatible server: OpenAI, LM Studio, vLLM, llama-server, ..."""

    preset: str = attrs.field(
        default="openai",
        validator=attrs.validators.in_(
            (
                "openai",
                "lmstudio",
                "vllm",
                "llama-server",
                "llama-cpp-python",
                "openrouter",
                "groq",
                "gemini",
                "custom",
            )
        ),
    )
    """Kind of server: sets the default address, model, key variable and prices
    (custom: give baseUrl and model)."""
    base_url: str = ""
    """Empty: the preset's (e.g. http://127.0.0.1:1234/v1 for LM Studio)."""
    model: str = ""
    """Empty: the preset's default model, or the first the server lists."""
    api_key_env: str = ""
    """Environment variable with the API key; empty: the preset's (none for local
    servers). Unset: the system keyring (``tandem-ls key set openai``). Keys are
    never read from settings or logged."""
    completion_mode: str = attrs.field(
        default="auto",
        validator=attrs.validators.in_(("auto", "template", "suffix", "chat")),
    )
    """``template``: a FIM prompt in ``fimFormat`` sent to /completions (best for
    local servers running a code model); ``suffix``: /completions with the
    ``suffix`` parameter; ``chat``: a fill-in instruction to /chat/completions;
    ``auto``: template when ``fimFormat`` is set, else chat."""
    fim_format: str = attrs.field(
        default="",
        validator=attrs.validators.in_(
            ("", "qwen", "codegemma", "starcoder", "codellama", "deepseek")
        ),
    )
    """The served model's FIM family, for ``template`` completions."""
    timeout_s: float = attrs.field(default=30.0, validator=_positive)
    """Seconds to wait for an answer before the next backend serves."""
    price_in_per_mtok: float = attrs.field(default=-1.0)
    """USD per million prompt tokens for the spend cap; -1: the preset's. A host off
    this machine whose preset has no price is refused until this or
    priceOutPerMtok is set (0: free)."""
    price_out_per_mtok: float = attrs.field(default=-1.0)
    """USD per million generated tokens for the spend estimate; -1: the preset's."""


@attrs.frozen
class AnthropicSettings:
    """Anthropic's Messages API (streaming, over httpx)."""

    model: str = "claude-sonnet-4-5"
    """Claude model for explain, refactor and escalated requests."""
    api_key_env: str = "ANTHROPIC_API_KEY"
    """Environment variable with the API key; unset: the system keyring
    (``tandem-ls key set anthropic``). Keys are never read from settings or logged."""
    base_url: str = "https://api.anthropic.com"
    """API address (a proxy or gateway may stand in for it)."""
    timeout_s: float = attrs.field(default=60.0, validator=_positive)
    """Seconds to wait for an answer before the next backend serves."""
    price_in_per_mtok: float = attrs.field(default=3.0, validator=_non_negative)
    """USD per million prompt tokens for the spend estimate."""
    price_out_per_mtok: float = attrs.field(default=15.0, validator=_non_negative)
    """USD per million generated tokens for the spend estimate."""


@attrs.frozen
class RoutingSettings:
    """Which backend serves each task, and when a request may go to the cloud."""

    completion: tuple[str, ...] = attrs.field(default=("local",), validator=_route)
    """Backends to try in order; the next one serves when one fails."""
    explain: tuple[str, ...] = attrs.field(default=("local",), validator=_route)
    """Backends for Explain, in order."""
    refactor: tuple[str, ...] = attrs.field(default=("local",), validator=_route)
    """Backends for refactors (rewrite, docstring, fix, ...), in order."""
    escalate_to: str = attrs.field(
        default="", validator=attrs.validators.in_(("", *NETWORK_BACKENDS))
    )
    """Backend for hard requests (explain, refactor); empty: never escalate."""
    allow_escalation: bool = False
    """Let hard requests go to ``escalateTo``: context too large for the local
    model, large selections, a local rewrite that fails its checks, Ask Cloud."""
    escalate_lines: int = attrs.field(default=120, validator=_positive)
    """Selections longer than this (lines) count as hard."""
    daily_spend_cap_usd: float = attrs.field(default=1.0, validator=_non_negative)
    """No paid request that could take today's spend past this: each reserves its
    worst case before it is sent and is settled at the usage reported (shared by
    every tandem-ls process)."""
    completion_deadline_s: float = attrs.field(default=2.0, validator=_non_negative)
    """A server or cloud backend that has not sent the first token of a completion
    within this many seconds is given up for the next backend in the chain, and
    rested for a while (0: wait for its ``timeoutS``). Only when a later backend
    can take over."""
    chat_deadline_s: float = attrs.field(default=10.0, validator=_non_negative)
    """The same for Explain and refactors, whose prompts are longer."""


@attrs.frozen
class PrivacySettings:
    """What may reach a backend that is not on this machine."""

    never_send: tuple[str, ...] = DEFAULT_NEVER_SEND
    """Files (gitignore patterns) never sent: requests on them stay local, and they
    never appear in another file's context. Matched against the absolute path and
    the path relative to every workspace folder."""
    redact_secrets: bool = True
    """Replace keys, tokens, private keys and passwords in payloads for non-local
    backends with ``[REDACTED]``."""
    cloud_context: str = attrs.field(
        default="file", validator=attrs.validators.in_(("file", "workspace"))
    )
    """What a non-local backend gets: ``file``: only the code of the current
    file; ``workspace``: also definitions from other files."""
    trust_loopback: bool = True
    """Servers on this machine (Ollama, LM Studio at 127.0.0.1) count as local:
    the rules above apply to them only when this is off. ``offline`` stops them
    either way."""
    send_outside_workspace: bool = False
    """Let files outside every workspace folder (``~/.ssh/config``, a file opened
    from elsewhere) reach a non-local backend. Off: requests on them stay local,
    and they never appear in another file's context."""
    confirmed_hosts: tuple[str, ...] = ()
    """Hosts (``name`` or ``name:port``) you confirmed may receive an API key
    although they are not the key's own service (a proxy or gateway in
    ``openai.baseUrl`` or ``anthropic.baseUrl``). A key is sent only to its
    preset's host or to one listed here."""


@attrs.frozen
class Settings:
    """Everything configurable; every field has a default."""

    backend: str = attrs.field(
        default="llama_cpp", validator=attrs.validators.in_(("llama_cpp", "fake"))
    )
    """The local backend: llama_cpp runs the model inside the server process
    (``fake`` replays a script, for tests). Routing chains call it ``local``."""
    offline: bool = False
    """Never open a network connection: no model download, no server or cloud
    backend (requests stay local)."""
    local: LocalSettings = LocalSettings()
    completion: CompletionSettings = CompletionSettings()
    context: ContextSettings = ContextSettings()
    actions: ActionSettings = ActionSettings()
    next_edit: NextEditSettings = NextEditSettings()
    routing: RoutingSettings = RoutingSettings()
    privacy: PrivacySettings = PrivacySettings()
    ollama: OllamaSettings = OllamaSettings()
    openai: OpenAISettings = OpenAISettings()
    anthropic: AnthropicSettings = AnthropicSettings()


CLIENT_KEYS = frozenset({"client", "server", "trace"})
"""Top-level keys that belong to the editor clients (launch and trace settings)."""


def camel_case(name: str) -> str:
    """A field name as clients spell it: ``debounce_ms`` -> ``debounceMs``."""
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _check_leaf(value: Any, tp: Any) -> Any:
    """Return ``value`` if it is of type ``tp`` (strictly), else raise TypeError."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        for arg in args:
            try:
                return _check_leaf(value, arg)
            except TypeError:
                continue
        raise TypeError(f"expected {_type_name(tp)}, got {type(value).__name__}")
    if tp is type(None):
        if value is None:
            return None
    elif typing.get_origin(tp) is tuple:
        if isinstance(value, list | tuple):
            return tuple(_check_leaf(v, args[0]) for v in value)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise TypeError(f"expected {_type_name(tp)}, got {type(value).__name__}")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return "null" if tp is type(None) else tp.__name__
    return " or ".join(_type_name(a) for a in typing.get_args(tp))


def _structure(
    cls: type[Any],
    data: Any,
    errors: list[str],
    bad: list[tuple[str, ...]],
    path: tuple[str, ...] = (),
) -> Any:
    """``cls`` from ``data``; what cannot be used goes to ``errors`` and ``bad``."""
    name = ".".join(path)
    if not isinstance(data, Mapping):
        errors.append(f"{name or 'settings'}: expected an object")
        bad.append(path)
        return cls()
    attrs.resolve_types(cls)
    fields = attrs.fields(cls)
    known = {camel_case(f.name) for f in fields} | {f.name for f in fields}
    if not path:
        known |= CLIENT_KEYS
    for key in data:
        if key not in known:
            errors.append(f"{'.'.join((*path, str(key)))}: unknown setting")
            bad.append((*path, key))
    kwargs: dict[str, Any] = {}
    for field in fields:
        key = camel_case(field.name)
        if key not in data and field.name not in data:
            continue
        raw = data[key] if key in data else data[field.name]
        where = (*path, key)
        if attrs.has(field.type):
            kwargs[field.name] = _structure(field.type, raw, errors, bad, where)
            continue
        try:
            value = _check_leaf(raw, field.type)
            if field.validator is not None:
                field.validator(None, field, value)
        except (TypeError, ValueError) as e:
            errors.append(f"{'.'.join(where)}: {e}")
            bad.append(where)
            continue
        kwargs[field.name] = value
    return cls(**kwargs)


def _drop(data: dict[str, Any], path: tuple[str, ...], lower: Any) -> None:
    """Put back at ``path`` what the lower layers had there (or nothing)."""
    if not path:
        return
    node: Any = data
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        lower = lower.get(key) if isinstance(lower, Mapping) else None
    if not isinstance(node, dict):
        return
    node.pop(path[-1], None)
    if isinstance(lower, Mapping) and path[-1] in lower:
        node[path[-1]] = lower[path[-1]]


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _normalise(data: Any) -> Any:
    """Key every mapping in camelCase, so the two spellings merge."""
    if not isinstance(data, Mapping):
        return data
    return {camel_case(str(k)): _normalise(v) for k, v in data.items()}


def build(*layers: Any) -> tuple[Settings, list[str]]:
    """Merge the layers (lowest precedence first) into Settings, and the errors.

    ``None`` layers are skipped. Each error names the setting and what is wrong;
    that setting keeps the value the lower layers gave it (or its default).
    """
    merged: dict[str, Any] = {}
    errors: list[str] = []
    for layer in layers:
        if layer is None:
            continue
        if not isinstance(layer, Mapping):
            errors.append("settings: expected an object")
            continue
        candidate = _merge(merged, _normalise(layer))
        bad: list[tuple[str, ...]] = []
        _structure(Settings, candidate, errors, bad)
        for path in bad:
            _drop(candidate, path, merged)
        merged = candidate
    settings = _structure(Settings, merged, [], [])
    return settings, errors
