"""The query encoder on ONNX Runtime: export at materialization, a torch-free encoder at run time.

`planqa model` converts e5-small into a sentence-transformers directory (planqa.e5convert)
and then calls :func:`ensure_onnx`, which exports the same BertModel to ONNX beside the
safetensors, once, offline::

    <model dir>/onnx/model.onnx[.data]        fp32 (same vectors as torch, cosine 1.0000)
    <model dir>/onnx/model_qint8.onnx[.data]  dynamic int8 (QInt8 weights per channel; 4x
                                              smaller)
    <model dir>/onnx/planqa_onnx.json    marker: the model fingerprint it was made from

Both graphs have each layer's attention fused into one node by onnxruntime's transformer
optimizer (``Attention``; ``QAttention`` in int8) and bias + GELU into ``BiasGelu``
(:func:`_fuse`): fewer, larger kernels for a short query.

At run time :class:`OnnxEncoder` is what `PlanEmbeddings` wraps for the `onnx` and
`onnx-int8` backends (PLANQA_BACKEND): the Rust tokenizer from ``tokenizer.json``, one
ONNX Runtime session, and mean pooling + L2 normalization in numpy — exactly the
modules the sentence-transformers directory declares (Transformer, mean Pooling with
the prompt included, Normalize). Neither torch nor sentence-transformers is imported,
which is where the start time and most of the memory went.

The export needs torch (at `planqa model` time only); the runtime needs onnxruntime,
tokenizers and numpy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Every value of PLANQA_BACKEND.
BACKENDS = ("torch", "onnx", "onnx-int8")
ONNX_DIR = "onnx"
#: The ONNX file of each ONNX backend, inside ``<model dir>/onnx``.
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}
ONNX_MARKER = "planqa_onnx.json"
#: Bump when the exported graph or the quantization changes: the files are then remade.
#: 4: eager-attention export with onnxruntime's transformer fusions (Attention, BiasGelu).
EXPORTER_VERSION = "4"
#: onnxruntime graph rewrites a session must not do: its CPU SkipLayerNormalization kernel
#: (residual add + LayerNorm in one op) takes 52 µs a layer where Add + LayerNormalization
#: take 14 (onnxruntime 1.32, 17 tokens), and with it an int8 query took 3.84 ms (p50)
#: instead of 2.94 (fp32: no difference). onnxruntime ignores names it does not know.
SLOW_FUSIONS = ["SkipLayerNormFusion", "BiasSkipLayerNormFusion"]
_OPSET = 17


class OnnxExportError(RuntimeError):
    """The ONNX files could not be made from the model directory."""


# ---------------------------------------------------------------- export (needs torch)


def onnx_path(model_dir: Path, backend: str) -> Path:
    """Where the ONNX file of `backend` lives for the model in `model_dir`."""
    if backend not in ONNX_FILES:
        raise ValueError(f"not an ONNX backend: {backend!r}")
    return Path(model_dir) / ONNX_DIR / ONNX_FILES[backend]


def _want_marker(model_dir: Path) -> dict[str, str]:
    from planqa.embeddings import model_fingerprint

    return {"model_fingerprint": model_fingerprint(str(model_dir)),
            "exporter_version": EXPORTER_VERSION, "opset": str(_OPSET)}


def _onnx_ready(out: Path, want: dict[str, str]) -> bool:
    names = [*ONNX_FILES.values(), *(f"{n}.data" for n in ONNX_FILES.values())]
    if not all((out / name).is_file() for name in names):
        return False
    try:
        have = json.loads((out / ONNX_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(have, dict) and all(have.get(k) == v for k, v in want.items())


def export_onnx(model_dir: Path, out: Path) -> None:
    """Export the BertModel in `model_dir` to ``out/model.onnx`` (fp32, dynamic batch and
    length; output ``last_hidden_state``) with its attention fused (:func:`_fuse`), and
    quantize that graph to ``out/model_qint8.onnx`` (onnxruntime's dynamic quantization,
    signed int8 weights, a scale per channel)."""
    # A local directory needs no hub; make sure nothing tries one (setup runs offline).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    class _Hidden(torch.nn.Module):  # a plain tensor out, not a ModelOutput
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    # Eager attention: its graph (MatMul, Softmax, the mask's Where) is the pattern
    # onnxruntime's fusion recognizes; the SDPA export is not, and stays unfused. Same
    # vectors either way (max |diff| to sentence-transformers 1e-6).
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    # eval() on the wrapper too: a new Module is in training mode, and the export puts
    # every submodule back in its wrapper's mode (dropout on) when it is done.
    hidden = _Hidden(model).eval()
    ids = torch.tensor([[0, 100, 200, 2], [0, 300, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    dyn = {0: "batch", 1: "tokens"}
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / ONNX_FILES["onnx"]
    plain = out / "plain.onnx"  # the export as torch writes it; fused into `fp32`, then gone
    with torch.no_grad(), warnings.catch_warnings():
        want = hidden(ids, mask).numpy()  # what the fused graph must give
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches
        # The TorchScript exporter: the dynamo one needs onnxscript and gains nothing here.
        torch.onnx.export(
            hidden, (ids, mask), str(plain),
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "last_hidden_state": dyn},
            opset_version=_OPSET, dynamo=False,
        )
    import logging

    quiet = logging.getLogger()  # the fusion and quantize_dynamic warn on the root logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        _fuse(plain, fp32, model.config, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()},
              want)
        plain.unlink()
        # Per channel: one scale per output column. Per tensor, the 250k-row embedding
        # table and the projections shared one scale each and query vectors fell to
        # cosine 0.980 (min) with fp32, which cost 3 eval questions; per channel, 0.993.
        # The fused ops are onnxruntime's own (com.microsoft), which ONNX's shape inference
        # cannot type: their outputs are float, as every activation here.
        quantize_dynamic(str(fp32), str(out / ONNX_FILES["onnx-int8"]),
                         weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})
    finally:
        quiet.setLevel(level)
    for name in ONNX_FILES.values():
        _externalize(out / name)


def _fuse(plain: Path, fp32: Path, config: Any, sample: dict[str, np.ndarray],
          want: np.ndarray) -> None:
    """Write `plain` (the torch export) to `fp32` with onnxruntime's transformer fusions:
    each layer's Q/K/V projections, scores, mask and softmax become one ``Attention``
    node (``QAttention`` once quantized) and bias + GELU one ``BiasGelu``; the raw 0/1
    mask goes to Attention as is, so no padding side is assumed.

    Left unfused: ``SkipLayerNormalization`` (residual add + LayerNorm), whose CPU kernel
    is the slower way (see :data:`SLOW_FUSIONS`), and ``EmbedLayerNormalization``, so the
    embedding table keeps its per-channel int8 Gather. On 150 questions of eval/qa.jsonl,
    one at a time on one thread, interleaved with the plain graphs: an int8 query 20-25 %
    faster (p50 3.7 -> 2.8 ms), fp32 2-14 %; cosine to torch unchanged (fp32 1.0000; int8
    min 0.994, mean 0.997), int8 new to old min 0.997, mean 0.9997.

    The fused graph must give torch's hidden states on `sample` (|diff| ≤ 1e-4); a model
    it gets wrong, or cannot fuse at all, keeps the plain graph."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    options.enable_bias_skip_layer_norm = False
    options.enable_embed_layer_norm = False
    options.use_raw_attention_mask(True)
    try:
        # opt_level 0: the Python fusions only; the session applies onnxruntime's own.
        fused = optimize_model(str(plain), model_type="bert",
                               num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
                               hidden_size=int(getattr(config, "hidden_size", 0) or 0),
                               optimization_options=options, opt_level=0)
        fused.save_model_to_file(str(fp32))
        del fused
        session = _session(fp32, 1)
        (got,) = session.run(None, sample)
        del session
        same = got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-4)
        problem = None if same else "differs from torch"
    except Exception as exc:  # any failure of this optional step: the plain graph
        problem = f"failed ({exc})"
    if problem:
        warnings.warn(f"fusing the ONNX graph of {plain.parent} {problem}; keeping it unfused",
                      stacklevel=2)
        shutil.copyfile(plain, fp32)


def _externalize(path: Path) -> None:
    """Move the weights of an ONNX file into ``<name>.data`` beside it. ONNX Runtime
    memory-maps external weights instead of parsing them into a protobuf and copying
    them out: the int8 session's peak RSS fell from 562 to 379 MB, steady 491 to 379."""
    import onnx

    model = onnx.load(str(path))
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=data.name, size_threshold=1024)
    data.chmod(0o644)  # onnx creates it private; the model is meant to be shared


def ensure_onnx(model_dir: Path) -> Path:
    """Return ``model_dir / "onnx"``, exporting both ONNX files first when they are missing
    or were made from other weights or by another exporter version.

    Built in a private temporary directory and renamed into place, so a reader never
    sees half a file and racing processes end with one complete copy."""
    model_dir = Path(model_dir)
    out = model_dir / ONNX_DIR
    want = _want_marker(model_dir)
    if _onnx_ready(out, want):
        return out
    tmp = Path(tempfile.mkdtemp(prefix=f".{ONNX_DIR}.tmp-", dir=model_dir))
    tmp.chmod(0o755)
    try:
        try:
            export_onnx(model_dir, tmp)
        except Exception as exc:
            raise OnnxExportError(f"could not export {model_dir} to ONNX: {exc}") from exc
        (tmp / ONNX_MARKER).write_text(json.dumps(want, indent=2) + "\n", encoding="utf-8")
        for _attempt in range(3):
            try:
                tmp.rename(out)  # atomic; fails while a (non-empty) `out` exists
                return out
            except OSError:
                if _onnx_ready(out, want):
                    return out  # another process won the race
                trash = out.with_name(f".{ONNX_DIR}.old-{os.getpid()}-{os.urandom(4).hex()}")
                with contextlib.suppress(FileNotFoundError):
                    out.rename(trash)
                    shutil.rmtree(trash, ignore_errors=True)
        raise OnnxExportError(f"could not install the ONNX files at {out}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- run time (no torch)


def _session(model_file: Path, threads: int) -> Any:
    """Every planqa ONNX Runtime session: on the CPU, `threads` intra-op threads, run in
    order, every graph optimization but :data:`SLOW_FUSIONS`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=SLOW_FUSIONS)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class OnnxEncoder:
    """The part of `SentenceTransformer` that planqa uses (`encode`, `prompts`,
    `get_embedding_dimension`), over an ONNX Runtime session.

    `threads` is the session's intra-op thread count (fixed when the session is made).
    `one_at_a_time` runs each text in a forward pass of its own: dynamic int8 quantizes
    the activations with one scale per batch, so batched, a question's vector would depend
    on the other questions and the padding in its batch (measured: up to 7e-3 per
    component), and the same question could get another answer under load."""

    def __init__(self, model_dir: Path, model_file: Path, threads: int = 1,
                 one_at_a_time: bool = False) -> None:
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        self.model_file = Path(model_file)
        self.one_at_a_time = one_at_a_time
        st_config = _read_json(model_dir / "config_sentence_transformers.json")
        self.prompts: dict[str, str] = dict(st_config.get("prompts") or {})
        max_len = int(_read_json(model_dir / "sentence_bert_config.json")["max_seq_length"])
        tok_config = _read_json(model_dir / "tokenizer_config.json")
        pooling = _read_json(model_dir / "1_Pooling" / "config.json")
        if not (pooling.get("pooling_mode_mean_tokens") and pooling.get("include_prompt", True)):
            raise OnnxExportError("the ONNX encoder does mean pooling over all tokens only")
        self._dim = int(pooling["word_embedding_dimension"])
        self._pad_id = int(_read_json(model_dir / "config.json").get("pad_token_id") or 0)

        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # As transformers does for split_special_tokens: "<s>" inside a text is text.
        tokenizer.encode_special_tokens = bool(tok_config.get("split_special_tokens", False))
        tokenizer.no_padding()
        tokenizer.enable_truncation(min(max_len, int(tok_config.get("model_max_length", max_len))))
        self.tokenizer = tokenizer

        self.session = _session(self.model_file, threads)

    def get_embedding_dimension(self) -> int:
        """The vector size (384 for e5-small)."""
        return self._dim

    def encode(self, sentences: Sequence[str], prompt_name: str | None = None,
               normalize_embeddings: bool = True, batch_size: int = 32,
               **_ignored: Any) -> np.ndarray:
        """Vectors of `sentences` (float32, one row each), with the named prompt prefixed,
        mean-pooled and, by default, L2-normalized — as `SentenceTransformer.encode`."""
        texts = [str(s) for s in sentences]
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        prefix = self.prompts.get(prompt_name, "") if prompt_name else ""
        # Longest first, as sentence-transformers does: batches of like lengths pad less.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        step = 1 if self.one_at_a_time else max(1, batch_size)
        for start in range(0, len(order), step):
            chunk = order[start:start + step]
            out[chunk] = self._forward([prefix + texts[i] for i in chunk])
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _forward(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, :len(enc.ids)] = enc.ids
            mask[row, :len(enc.ids)] = 1
        (hidden,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        weights = mask[:, :, None].astype(np.float32)
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)

    def prefault(self) -> int:
        """Read the weight files through the page cache and run one query. The session
        memory-maps its weights, so the process holds only the pages queries touch (the
        layers, and the embedding rows of tokens seen so far); after this a new row costs a
        minor fault, never a disk read, and the buffers are allocated. Returns the bytes
        read."""
        total = 0
        data = self.model_file.with_name(self.model_file.name + ".data")
        for f in (self.model_file, data):
            if f.is_file():
                with open(f, "rb") as fh:
                    for block in iter(lambda fh=fh: fh.read(1 << 22), b""):
                        total += len(block)
        self.encode(["预热"], prompt_name="query" if "query" in self.prompts else None)
        return total


__all__ = ["BACKENDS", "ONNX_FILES", "OnnxEncoder", "OnnxExportError", "ensure_onnx",
           "export_onnx", "onnx_path"]
