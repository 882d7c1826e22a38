"""A model's FIM tokens as llama.cpp's own vocabulary API reports them.

llama.cpp finds the FIM tokens of a vocabulary by metadata or by their texts
(``llama_vocab_fim_pre`` and so on, CodeLlama's ``▁<PRE>`` included); our family
table (``tandem.fim``) adds what it does not say. Works on a model loaded with
``vocab_only``, so ``tandem-ls doctor`` can tell the family of a model too big for
this machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tandem import fim

if TYPE_CHECKING:
    from llama_cpp._internals import LlamaModel

logger = logging.getLogger(__name__)


class Vocabulary:
    """Exact token-text lookups in one loaded model's vocabulary."""

    def __init__(self, model: LlamaModel) -> None:
        self.model = model
        self._ids: dict[str, int] = {}
        self._by_text: dict[bytes, int] | None = None

    def text(self, token: int) -> str:
        """The token's text as the vocabulary stores it ("" for none)."""
        import llama_cpp

        if token < 0:
            return ""
        raw: bytes = llama_cpp.llama_vocab_get_text(self.model.vocab, token)
        return raw.decode("utf-8", errors="replace")

    def find(self, text: str) -> int | None:
        """The id of the one token whose text is exactly ``text``, if any."""
        if text in self._ids:
            return self._ids[text]
        # Control and user-defined tokens: special-token parsing finds them.
        ids: list[int] = self.model.tokenize(text.encode(), add_bos=False, special=True)
        if len(ids) == 1 and self.text(ids[0]) == text:
            self._ids[text] = ids[0]
            return ids[0]
        # A normal piece (CodeLlama's ``▁<EOT>``): look it up by its text.
        found = self._all().get(text.encode())
        if found is not None:
            self._ids[text] = found
        return found

    def has(self, text: str) -> bool:
        """Whether ``text`` is exactly one token."""
        return self.find(text) is not None

    def _all(self) -> dict[bytes, int]:
        if self._by_text is None:
            import llama_cpp

            vocab = self.model.vocab
            get = llama_cpp.llama_vocab_get_text
            n = llama_cpp.llama_vocab_n_tokens(vocab)
            self._by_text = {}
            for i in range(n):
                self._by_text.setdefault(get(vocab, i), i)
        return self._by_text

    def reported_fim(self) -> dict[str, int]:
        """The FIM tokens llama.cpp found, by role (``fim.FIM_ROLES``)."""
        import llama_cpp

        vocab = self.model.vocab
        found: dict[str, int] = {}
        for role in fim.FIM_ROLES:
            token = int(getattr(llama_cpp, f"llama_vocab_fim_{role}")(vocab))
            if token >= 0:
                found[role] = token
        return found


@attrs.frozen
class FimTokens:
    """A FIM format in a vocabulary's own texts, and the ids of its tokens."""

    format: fim.FimFormat | None
    ids: dict[str, int]
    """Token id of every control text the format uses (markers and stops too)."""
    reported: dict[str, str]
    """What llama.cpp itself reported, by role: for status and doctor."""


def detect(
    vocab: Vocabulary, architecture: str, model_name: str, requested: str = "auto"
) -> FimTokens:
    """The model's FIM format: llama.cpp's tokens, completed by our table.

    ``requested`` is the ``fimFormat`` setting: ``auto``, ``none`` or a family
    name (which must then be in the vocabulary: BackendConfigError otherwise is
    the caller's to raise, on ``format is None``).
    """
    reported_ids = vocab.reported_fim()
    reported = {role: vocab.text(t) for role, t in reported_ids.items()}
    fmt: fim.FimFormat | None
    if requested == "auto":
        fmt = fim.detect(reported, vocab.has, architecture, model_name)
    else:
        chosen = fim.by_name(requested)
        fmt = fim.adapt(chosen, reported, vocab.has) if chosen else None
    ids: dict[str, int] = {}
    if fmt is not None:
        texts = [*fmt.special_tokens, *fmt.stop, fmt.file_sep, fmt.repo_name]
        by_text = {reported[r]: t for r, t in reported_ids.items()}
        for text in filter(None, texts):
            token = by_text.get(text)
            if token is None:
                token = vocab.find(text)
            if token is not None:
                ids[text] = token
    return FimTokens(fmt, ids, reported)


def load_vocab(path: Path) -> LlamaModel:
    """Load only the vocabulary of a GGUF (no weights: cheap for any size)."""
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    from tandem.backends.llama_cpp import route_llama_log

    route_llama_log()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    params.n_gpu_layers = 0
    # verbose=False would dup2() fds 1 and 2 to /dev/null meanwhile: process-wide,
    # and fd 1 is the LSP channel when the server's doctor command runs this.
    return LlamaModel(path_model=str(path), params=params, verbose=True)


def describe(path: Path) -> dict[str, Any]:
    """The FIM family of a GGUF from its vocabulary alone (for ``doctor``)."""
    model = load_vocab(path)
    try:
        meta = model.metadata()
        arch = meta.get("general.architecture", "")
        name = meta.get("general.name", path.stem)
        found = detect(Vocabulary(model), arch, name)
        fmt = found.format
        return {
            "architecture": arch,
            "name": name,
            "fim_family": fmt.family if fmt else None,
            "fim_tokens": (
                {t: found.ids[t] for t in fmt.special_tokens} if fmt else {}
            ),
            "llama_cpp_fim": found.reported,
        }
    finally:
        model.close()  # type: ignore[no-untyped-call]
