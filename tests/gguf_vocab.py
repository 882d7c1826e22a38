"""Tiny vocabulary-only GGUFs carrying each model family's real control tokens.

Written with the ``gguf`` package (llama.cpp's own writer) and loaded by llama.cpp
with ``vocab_only``: no weights, a few kilobytes each. The token texts, their
types and the metadata are the real ones; only the ids are packed together
(the byte tokens first, then the family's control tokens).

Sources of the token texts:

- CodeLlama: ``▁<PRE>`` 32007, ``▁<SUF>`` 32008, ``▁<MID>`` 32009, ``▁<EOT>`` 32010
  in CodeLlama-7b-hf's tokenizer.json, normal SentencePiece pieces (the
  ``added_tokens`` list holds only ``<unk>``, ``<s>``, ``</s>``); conversions since
  llama.cpp #6689 add ``tokenizer.ggml.prefix_token_id`` and so on, older ones
  (TheBloke's GGUFs) do not.
- CodeGemma: ``<|fim_prefix|>`` 67, ``<|fim_middle|>`` 68, ``<|fim_suffix|>`` 69,
  ``<|file_separator|>`` 70 (codegemma-7b tokenizer.json), ``<end_of_turn>`` 107
  (the id llama.cpp's converter gives ``eot``); control type, as the converter's
  ``does_token_look_special`` marks ``<|...|>``.
- DeepSeek-Coder and StarCoder2: llama.cpp's ``models/ggml-vocab-deepseek-coder.gguf``
  and ``models/ggml-vocab-starcoder.gguf`` (texts and types as stored there).
- Qwen2.5-Coder and SmolLM2: the GGUFs of the test models
  (qwen2.5-coder-0.5b-instruct-q4_k_m, SmolLM2-135M-Instruct.Q4_1).
"""

from __future__ import annotations

from pathlib import Path

import attrs

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6


@attrs.frozen
class Family:
    """One model family's vocabulary metadata, as its GGUFs carry it."""

    arch: str
    name: str
    tokenizer: str  # "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    pre: str
    specials: tuple[tuple[str, int], ...]
    """(text, token type) of the control tokens, in their real order."""
    ids: tuple[tuple[str, str], ...] = ()
    """Metadata keys ``tokenizer.ggml.<key>`` naming one of the specials."""


FAMILIES = {
    "codellama": Family(
        "llama",
        "codellama_codellama-7b-hf",
        "llama",
        "default",
        (
            ("<unk>", UNKNOWN),
            ("<s>", CONTROL),
            ("</s>", CONTROL),
            ("▁<SU", NORMAL),
            ("▁<SUF", NORMAL),
            ("▁<PRE", NORMAL),
            ("▁<M", NORMAL),
            ("▁<MID", NORMAL),
            ("▁<E", NORMAL),
            ("▁<EOT", NORMAL),
            ("▁<PRE>", NORMAL),
            ("▁<SUF>", NORMAL),
            ("▁<MID>", NORMAL),
            ("▁<EOT>", NORMAL),
        ),
        (
            ("unknown_token_id", "<unk>"),
            ("bos_token_id", "<s>"),
            ("eos_token_id", "</s>"),
        ),
    ),
    "codegemma": Family(
        "gemma",
        "codegemma-2b",
        "llama",
        "default",
        (
            ("<pad>", CONTROL),
            ("<eos>", CONTROL),
            ("<bos>", CONTROL),
            ("<unk>", UNKNOWN),
            ("<|fim_prefix|>", CONTROL),
            ("<|fim_middle|>", CONTROL),
            ("<|fim_suffix|>", CONTROL),
            ("<|file_separator|>", CONTROL),
            ("<start_of_turn>", CONTROL),
            ("<end_of_turn>", CONTROL),
        ),
        (
            ("padding_token_id", "<pad>"),
            ("eos_token_id", "<eos>"),
            ("bos_token_id", "<bos>"),
            ("unknown_token_id", "<unk>"),
            ("prefix_token_id", "<|fim_prefix|>"),
            ("suffix_token_id", "<|fim_suffix|>"),
            ("middle_token_id", "<|fim_middle|>"),
            ("eot_token_id", "<end_of_turn>"),
        ),
    ),
    "deepseek-coder": Family(
        "llama",
        "deepseek-ai_deepseek-coder-1.3b-base",
        "gpt2",
        "deepseek-coder",
        (
            ("<｜begin▁of▁sentence｜>", CONTROL),  # noqa: RUF001 - the real text
            ("<｜end▁of▁sentence｜>", CONTROL),  # noqa: RUF001
            ("<｜fim▁hole｜>", USER_DEFINED),  # noqa: RUF001
            ("<｜fim▁begin｜>", USER_DEFINED),  # noqa: RUF001
            ("<｜fim▁end｜>", USER_DEFINED),  # noqa: RUF001
            ("<pad>", USER_DEFINED),
            ("<|User|>", USER_DEFINED),
            ("<|Assistant|>", USER_DEFINED),
            ("<|EOT|>", USER_DEFINED),
        ),
        (
            ("bos_token_id", "<｜begin▁of▁sentence｜>"),  # noqa: RUF001
            ("eos_token_id", "<｜end▁of▁sentence｜>"),  # noqa: RUF001
        ),
    ),
    "starcoder2": Family(
        "starcoder2",
        "starcoder2-3b",
        "gpt2",
        "starcoder",
        (
            ("<|endoftext|>", CONTROL),
            ("<fim_prefix>", CONTROL),
            ("<fim_middle>", CONTROL),
            ("<fim_suffix>", CONTROL),
            ("<fim_pad>", CONTROL),
            ("<repo_name>", CONTROL),
            ("<file_sep>", CONTROL),
            ("<issue_start>", CONTROL),
        ),
        (("bos_token_id", "<|endoftext|>"), ("eos_token_id", "<|endoftext|>")),
    ),
    "qwen2.5-coder": Family(
        "qwen2",
        "Qwen2.5 Coder 0.5B Instruct",
        "gpt2",
        "qwen2",
        (
            ("<|endoftext|>", CONTROL),
            ("<|im_start|>", CONTROL),
            ("<|im_end|>", CONTROL),
            ("<|fim_prefix|>", CONTROL),
            ("<|fim_middle|>", CONTROL),
            ("<|fim_suffix|>", CONTROL),
            ("<|fim_pad|>", CONTROL),
            ("<|repo_name|>", CONTROL),
            ("<|file_sep|>", CONTROL),
        ),
        (
            ("eos_token_id", "<|im_end|>"),
            ("padding_token_id", "<|endoftext|>"),
            ("bos_token_id", "<|endoftext|>"),
        ),
    ),
    "smollm2": Family(
        "llama",
        "SmolLM2 135M Instruct",
        "gpt2",
        "smollm",
        (
            ("<|endoftext|>", CONTROL),
            ("<|im_start|>", CONTROL),
            ("<|im_end|>", CONTROL),
            ("<repo_name>", CONTROL),
            ("<reponame>", CONTROL),
            ("<file_sep>", CONTROL),
            ("<filename>", CONTROL),
        ),
        (("bos_token_id", "<|im_start|>"), ("eos_token_id", "<|im_end|>")),
    ),
}


def _byte_level() -> list[str]:
    """GPT-2's 256 byte-level symbols (``bytes_to_unicode``), in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def write(family: str, path: Path, with_fim_ids: bool = True) -> Path:
    """Write ``family``'s vocabulary-only GGUF to ``path``.

    ``with_fim_ids=False`` leaves out the FIM id metadata (prefix/suffix/middle/
    eot token ids), as in GGUFs converted before llama.cpp learned them.
    """
    import gguf

    fam = FAMILIES[family]
    tokens: list[str] = []
    types: list[int] = []
    scores: list[float] = []
    merges: list[str] = []
    if fam.tokenizer == "llama":
        for text, kind in fam.specials:
            if kind != NORMAL:
                tokens.append(text)
                types.append(kind)
        tokens += [f"<0x{b:02X}>" for b in range(256)]
        types += [BYTE] * 256
        for piece in ("▁", "<", ">"):
            tokens.append(piece)
            types.append(NORMAL)
        for text, kind in fam.specials:
            if kind == NORMAL:  # CodeLlama's FIM pieces come after the others
                tokens.append(text)
                types.append(kind)
        scores = [0.0] * len(tokens)
    else:
        tokens = [t for t, _ in fam.specials] + _byte_level() + ["Ġt"]
        types = [k for _, k in fam.specials] + [NORMAL] * 257
        merges = ["Ġ t"]
    writer = gguf.GGUFWriter(str(path), fam.arch)
    writer.add_name(fam.name)
    writer.add_context_length(4096)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(4)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_layer_norm_eps(1e-5)
    writer.add_tokenizer_model(fam.tokenizer)
    writer.add_tokenizer_pre(fam.pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if scores:
        writer.add_token_scores(scores)
    if merges:
        writer.add_token_merges(merges)
    for key, text in fam.ids:
        if with_fim_ids or key.split("_")[0] not in (
            "prefix",
            "suffix",
            "middle",
            "eot",
        ):
            writer.add_uint32(f"tokenizer.ggml.{key}", tokens.index(text))
    if family == "codellama" and with_fim_ids:
        for key, text in (
            ("prefix", "▁<PRE>"),
            ("suffix", "▁<SUF>"),
            ("middle", "▁<MID>"),
            ("eot", "▁<EOT>"),
        ):
            writer.add_uint32(f"tokenizer.ggml.{key}_token_id", tokens.index(text))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path
