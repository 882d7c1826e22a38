"""Backend registry: names mapped to classes, imported only when selected."""

from __future__ import annotations

import importlib

from tandem.backends.base import (
    Backend,
    BackendAuthError,
    BackendConfigError,
    BackendError,
    BackendRateLimited,
    BackendRefused,
    BackendTimeout,
    BackendUnavailable,
    ChatMessage,
    ChatRequest,
    ContextTooLarge,
    GenerateRequest,
    GenerationStats,
    NetworkDown,
    UnknownBackendError,
)

__all__ = [
    "Backend",
    "BackendAuthError",
    "BackendConfigError",
    "BackendError",
    "BackendRateLimited",
    "BackendRefused",
    "BackendTimeout",
    "BackendUnavailable",
    "ChatMessage",
    "ChatRequest",
    "ContextTooLarge",
    "GenerateRequest",
    "GenerationStats",
    "NetworkDown",
    "UnknownBackendError",
    "backend_class",
]

REGISTRY: dict[str, str] = {
    "llama_cpp": "tandem.backends.llama_cpp:LlamaCppBackend",
    "fake": "tandem.backends.fake:FakeBackend",
    "ollama": "tandem.backends.ollama:OllamaBackend",
    "openai": "tandem.backends.openai_compat:OpenAIBackend",
    "anthropic": "tandem.backends.anthropic:AnthropicBackend",
}


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered as ``name``."""
    try:
        target = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownBackendError(f"unknown backend {name!r}; known: {known}") from None
    module, _, attr = target.partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module), attr)
    return cls
