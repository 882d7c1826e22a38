"""pytest-lsp fixtures: the real server process with the real Qwen test model."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.models import qwen_model, smollm_model


def server_config(model: str, **env: str) -> ClientServerConfig:
    """The server as an editor starts it, with the model from TANDEM_MODEL."""
    server_env = {**os.environ, "TANDEM_MODEL": model, **env}
    return ClientServerConfig(
        server_command=[sys.executable, "-m", "tandem", "-v"], server_env=server_env
    )


def capabilities(client: str) -> types.ClientCapabilities:
    """Capabilities of a real client.

    ``vscode``: VS Code's, plus the LSP 3.18 inline completion that
    vscode-languageclient 11 declares. ``neovim``: Neovim 0.11's (no inline
    completion), so it is served by ``textDocument/completion``.
    """
    if client == "neovim":
        return client_capabilities("neovim@v0.11.0")
    caps = client_capabilities("visual-studio-code")
    assert caps.text_document is not None
    caps.text_document.inline_completion = types.InlineCompletionClientCapabilities(
        dynamic_registration=True
    )
    return caps


def _command_or_code_action(obj: Any, _: type) -> types.Command | types.CodeAction:
    """lsprotocol reads any code action that has a ``command`` as a Command (its
    hook checks for the key, not for a string); editors check the type."""
    converter = _command_or_code_action.converter  # type: ignore[attr-defined]
    if isinstance(obj.get("command"), str):
        return converter.structure(obj, types.Command)  # type: ignore[no-any-return]
    return converter.structure(obj, types.CodeAction)  # type: ignore[no-any-return]


def answer_client_requests(client: LanguageClient) -> list[Any]:
    """Handle what a real editor handles; returns the status notifications seen."""
    statuses: list[Any] = []
    converter = client.protocol._converter
    _command_or_code_action.converter = converter  # type: ignore[attr-defined]
    converter.register_structure_hook(
        types.Command | types.CodeAction, _command_or_code_action
    )

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register_capability(params: types.RegistrationParams) -> None:
        return None

    @client.feature("$/tandem/status")
    def on_status(params: Any) -> None:
        statuses.append(params)

    return statuses


def initialize_params(
    client: str, options: Any = None, root: str | None = None
) -> types.InitializeParams:
    """InitializeParams as ``client`` sends them, with a workspace folder.

    Without ``root`` the folder does not exist on disk (nothing to index).
    """
    uri = Path(root).as_uri() if root else "file:///work/project"
    return types.InitializeParams(
        capabilities=capabilities(client),
        initialization_options=options,
        process_id=os.getpid(),
        root_uri=uri,
        workspace_folders=[types.WorkspaceFolder(uri=uri, name=Path(uri).name)],
    )


@pytest_lsp.fixture(
    config=server_config(str(qwen_model())), params=["vscode", "neovim"]
)
async def client(
    lsp_client: LanguageClient, request: pytest.FixtureRequest
) -> AsyncIterator[None]:
    """A session with the Qwen model, once per client kind."""
    answer_client_requests(lsp_client)
    # A fixed debounce and no prefetch: the tests count generations. The latency
    # features have their own tests (test_latency.py).
    lsp_client.set_configuration(
        {
            "completion": {
                "debounceMs": 20,
                "adaptiveDebounce": False,
                "prefetch": False,
            }
        },
        section="tandem",
    )
    await lsp_client.initialize_session(initialize_params(request.param))
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=server_config(str(smollm_model())))
async def smol_client(lsp_client: LanguageClient) -> AsyncIterator[None]:
    """A session with SmolLM2: a model without FIM tokens."""
    answer_client_requests(lsp_client)
    await lsp_client.initialize_session(initialize_params("neovim"))
    yield
    await lsp_client.shutdown_session()
