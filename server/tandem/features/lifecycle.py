"""Initialize, configuration and shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types
from pygls.lsp._capabilities import get_capability

from tandem.features import completion, nextedit
from tandem.server import TandemServer

logger = logging.getLogger(__name__)

CONFIG_TIMEOUT_S = 5.0


async def pull_configuration(ls: TandemServer) -> Any:
    """The ``tandem`` section from ``workspace/configuration``, or None."""
    if not get_capability(ls.client_capabilities, "workspace.configuration", False):
        return None
    params = types.ConfigurationParams(
        items=[types.ConfigurationItem(section="tandem")]
    )
    try:
        result = await asyncio.wait_for(
            ls.workspace_configuration_async(params), CONFIG_TIMEOUT_S
        )
    except Exception:  # a client that errors or never answers: keep what we have
        logger.warning("workspace/configuration failed", exc_info=True)
        return None
    return result[0] if result else None


SOURCE_GLOB = "**/*.{py,pyi,js,mjs,cjs,jsx,ts,mts,tsx,go,rs,java,c,h,cc,cpp,cxx,hpp,hh}"
WATCHERS = types.Registration(
    id="tandem-watched-files",
    method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
    register_options=types.DidChangeWatchedFilesRegistrationOptions(
        watchers=[types.FileSystemWatcher(glob_pattern=SOURCE_GLOB)]
    ),
)


async def register_capability(
    ls: TandemServer, registration: types.Registration
) -> None:
    """Register a capability; a client that then refuses is logged, not fatal."""
    try:
        await ls.client_register_capability_async(
            types.RegistrationParams(registrations=[registration])
        )
    except Exception:
        logger.warning("the client refused to register %s", registration.method)


def register(server: TandemServer) -> None:
    """Register the lifecycle handlers."""

    @server.feature(types.INITIALIZE)
    def initialize(ls: TandemServer, params: types.InitializeParams) -> None:
        ls.loop = asyncio.get_running_loop()
        ls.initialization_options = params.initialization_options
        ls.experimental = {**nextedit.CAPABILITY}
        if get_capability(ls.client_capabilities, "text_document.inline_completion"):
            completion.register_inline(ls)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: TandemServer, params: types.InitializedParams) -> None:
        await ls.apply_settings(await pull_configuration(ls))
        ls.start_index()
        if get_capability(
            ls.client_capabilities,
            "workspace.did_change_watched_files.dynamic_registration",
            False,
        ):
            await register_capability(ls, WATCHERS)
        if get_capability(
            ls.client_capabilities,
            "workspace.did_change_configuration.dynamic_registration",
            False,
        ):
            await register_capability(
                ls,
                types.Registration(
                    id="tandem-did-change-configuration",
                    method=types.WORKSPACE_DID_CHANGE_CONFIGURATION,
                    register_options={"section": "tandem"},
                ),
            )

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: TandemServer, params: types.DidChangeConfigurationParams
    ) -> None:
        pulled = await pull_configuration(ls)
        if pulled is None and isinstance(params.settings, dict):
            pulled = params.settings.get("tandem")  # clients that push instead
        await ls.apply_settings(pulled)

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: TandemServer, params: None) -> None:
        ls.protocol.cancel_pending()
        await ls.aclose()
