"""The OpenAI-compatible backend against a real server on loopback.

The server is llama-cpp-python's own (``python -m llama_cpp.server``) running the
Qwen test model: what LM Studio, vLLM and llama-server users point tandem-ls at.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types

from tandem.backends.base import ChatMessage, ChatRequest, GenerateRequest
from tandem.backends.openai_compat import OpenAIBackend
from tandem.config import OpenAISettings
from tests.e2e.helpers import PALINDROME, complete, open_doc, session, status
from tests.models import qwen_model

CURSOR = types.Position(line=2, character=4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama_cpp.server on 127.0.0.1 with the Qwen model; its /v1 URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(qwen_model()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120  # a hang guard, not a speed bound
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text()[-2000:]) from None
                time.sleep(0.25)
        yield url
    finally:
        proc.terminate()  # only the process this fixture started
        proc.wait(timeout=30)


@pytest.mark.slow
async def test_chat_and_fim_completion_from_a_real_server(llama_server: str) -> None:
    backend = OpenAIBackend(
        OpenAISettings(
            preset="llama-cpp-python", base_url=llama_server, fim_format="qwen"
        )
    )
    assert backend.mode == "template"
    chat = ChatRequest(
        (ChatMessage("user", "What is the capital of France? One word."),),
        max_tokens=10,
    )
    answer = "".join([c async for c in backend.chat(chat)])
    assert "paris" in answer.lower()
    fill = GenerateRequest(
        "def is_palindrome(s: str) -> bool:\n    ",
        "\n\nprint(is_palindrome('abba'))\n",
        max_tokens=20,
    )
    completion = "".join([c async for c in backend.generate(fill)])
    assert completion.startswith("return s == s[::-1]")
    await backend.aclose()


@pytest.mark.slow
async def test_completions_routed_to_the_server_through_lsp(llama_server: str) -> None:
    options = {
        "routing": {
            "completion": ["openai"],
            "explain": ["openai"],
            "refactor": ["openai"],
        },
        "openai": {
            "preset": "llama-cpp-python",
            "baseUrl": llama_server,
            "fimFormat": "qwen",
        },
    }
    async with session({}, options) as client:
        uri = "file:///work/project/pal.py"
        open_doc(client, uri, PALINDROME)
        text = await complete(client, uri, CURSOR)
        assert text == "return s == s[::-1]"
        state = await status(client)
        assert state["model"]["state"] == "not used"  # nothing loaded in-process
        decision = state["routing"]["decisions"][0]
        assert decision["backend"] == "openai" and decision["outcome"] == "ok"
        assert decision["reason"] == "routing.completion[0]"


@pytest.mark.slow
async def test_a_server_that_is_down_falls_back_to_the_local_model(
    tmp_path: Path,
) -> None:
    options = {
        "routing": {"completion": ["openai", "local"]},
        "openai": {
            "preset": "lmstudio",
            "baseUrl": f"http://127.0.0.1:{free_port()}/v1",
        },
    }
    async with session({"TANDEM_MODEL": str(qwen_model())}, options) as client:
        uri = "file:///work/project/pal.py"
        open_doc(client, uri, PALINDROME)
        shown = asyncio.ensure_future(
            client.wait_for_notification(types.WINDOW_SHOW_MESSAGE)
        )
        text = await complete(client, uri, CURSOR)
        assert "s[::-1]" in text
        message = await asyncio.wait_for(shown, 30)
        assert "not running" in message.message
        assert message.message.endswith("answered by local")
        state = await status(client)
        outcomes = [
            (d["backend"], d["outcome"][:6]) for d in state["routing"]["decisions"]
        ]
        assert outcomes[:2] == [("local", "ok"), ("openai", "failed")]
