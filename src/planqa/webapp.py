"""The web chat for staff: a Gradio Blocks UI and plain JSON routes on one FastAPI app.

    create_app(qa=None, settings=None) -> FastAPI   the app (warms the index and model up)
    serve(settings)                                 run it with uvicorn; prints "ready at …"

Routes on the app:
    /                 the chat (Gradio; login when PLANQA_AUTH is set)
    /gradio_api/…     Gradio's own API; api_name="ask" answers (question, history)
    POST /api/ask     JSON in, Answer.to_dict() out (bearer token when PLANQA_API_TOKEN is set)
    POST /api/feedback  a vote (and comment) on an answer, into the feedback log
    GET  /api/health  {"status": "ok", …} once warm, 503 when the index is unavailable

Nothing a user sends reaches a file path or a shell: the only file written is the
feedback log, whose path comes from the settings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import html
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Gradio reads these when it is imported and when Blocks are built; the page must not
# call home (analytics, version checks, Hugging Face telemetry).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from planqa import __version__
from planqa.batching import QueryBatcher
from planqa.config import Settings
from planqa.text import clean_input, to_simplified, to_traditional

if TYPE_CHECKING:
    from planqa.answering import Answer
    from planqa.chain import PlanQA
    from planqa.corpus import Passage, Plan

logger = logging.getLogger("planqa.webapp")

#: Largest request body /api/ask reads; more is refused with 413 before parsing.
MAX_BODY_BYTES = 64 * 1024
#: Longest history /api/ask accepts (turns) and longest feedback comment kept (chars).
MAX_HISTORY_TURNS = 50
MAX_COMMENT_CHARS = 2000
SIMPLIFIED, TRADITIONAL = "简体", "繁體"
SCRIPTS = {"simplified": False, "traditional": True}
VOTES = ("useful", "not_useful")

EXAMPLE_QUESTIONS = (
    "事业编制要精简到多少名？",
    "学会治理结构改革有哪些要求？",
    "如何建设网上科技工作者之家？",
    "科协系统深化改革的总体目标是什么？",
    "第四部分第3条讲了什么？",
)

INDEX_MISSING_ZH = (
    "问答服务暂不可用：方案的检索索引缺失、损坏或已过期。"
    "请管理员在服务器上运行 <code>make index</code> 重建索引，然后重启服务。"
)
LOAD_FAILED_ZH = (
    "问答服务暂不可用：模型或索引未能加载。"
    "请管理员运行 <code>make setup</code> 和 <code>make index</code>，然后重启服务。"
)

# System and locally installed fonts only: nothing is fetched from a font CDN.
UI_FONTS = (
    "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Noto Sans CJK SC",
    "Source Han Sans SC", "WenQuanYi Micro Hei", "system-ui", "sans-serif",
)
MONO_FONTS = ("SFMono-Regular", "Consolas", "Noto Sans Mono CJK SC", "monospace")


# ---------------------------------------------------------------- feedback log


class FeedbackLog:
    """Append-only JSONL log of answer feedback.

    Each line is written, flushed and fsynced on its own, so a restart loses nothing.
    A failure to write is logged once and remembered in `error` (the UI shows it);
    it never propagates to the caller, so answering keeps working."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.error: str | None = None
        self._lock = threading.Lock()
        self._warned = False

    def _fail(self, exc: OSError) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        if not self._warned:  # once per process: a broken path must not flood the log
            self._warned = True
            logger.warning("feedback log %s is not writable (%s); feedback is not saved",
                           self.path, self.error)

    def check(self) -> bool:
        """Try to open the log for appending (creating it if needed); False if that fails."""
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8"):
                    pass
            except OSError as exc:
                self._fail(exc)
                return False
        return True

    def append(self, record: dict[str, Any]) -> bool:
        """Append one record as a JSON line; True when it reached the disk."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                self._fail(exc)
                return False
        self.error = None
        return True


def feedback_record(turn: dict[str, Any], vote: str, comment: str = "") -> dict[str, Any]:
    """The log line for feedback on one answer (`turn` as kept in the session state)."""
    answer = turn["answer"]
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "id": turn["id"],  # several lines per answer are possible: the last one counts
        "question": turn["question"],
        "answer": answer.get("answer", ""),
        "found": answer.get("found"),
        "citations": [
            {k: c.get(k) for k in ("ref", "title", "quote")}
            for c in answer.get("citations", []) or answer.get("related", [])
        ],
        "vote": vote,
        "comment": comment[:MAX_COMMENT_CHARS],
    }


# ---------------------------------------------------------------- script conversion


def convert_script(text: str, traditional: bool) -> str:
    """Free text (not a quotation) into one script with OpenCC."""
    return to_traditional(text) if traditional else to_simplified(text)


def _find_passage(plan: Plan, cite: dict[str, Any]) -> Passage | None:
    """The plan passage a citation points at (by ref, then by its quoted sentences)."""
    candidates = [p for p in plan.passages if p.ref == cite.get("ref")]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    wanted = {to_simplified(h) for h in cite.get("highlights") or ()}
    for p in candidates:
        if wanted & set(p.sentences_simplified):
            return p
    return candidates[0]


def _swap_exact(text: str, pairs: list[tuple[str, str]], traditional: bool) -> str:
    """`text` in the other script: each `old` of `pairs` becomes its `new` verbatim (the
    plan's own wording), only the rest goes through OpenCC."""
    slots: list[str] = []
    for old, new in sorted(pairs, key=lambda p: -len(p[0])):
        if old and old in text:
            text = text.replace(old, f"\x00{len(slots)}\x00")
            slots.append(new)
    text = convert_script(text, traditional)
    return re.sub("\x00(\\d+)\x00", lambda m: slots[int(m.group(1))], text)


def _citation_pairs(plan: Plan, cite: dict[str, Any], traditional: bool
                    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The citation in the other script, and the (old, new) strings it swapped."""
    out = dict(cite)
    p = _find_passage(plan, cite)
    if p is None:
        for key in ("title", "quote", "text"):
            out[key] = convert_script(cite.get(key, ""), traditional)
        out["highlights"] = [convert_script(h, traditional) for h in cite.get("highlights", [])]
        return out, []
    old, new = p.in_script(not traditional), p.in_script(traditional)
    by_simplified = dict(zip(p.sentences_simplified, new["sentences"], strict=True))
    highlights = [by_simplified.get(to_simplified(h)) or convert_script(h, traditional)
                  for h in cite.get("highlights", [])]
    pairs = list(zip(cite.get("highlights", []), highlights, strict=True))
    pairs += [(str(old[k]), str(new[k])) for k in ("section_title", "heading") if old[k]]
    out.update(title=_swap_exact(cite.get("title", ""), pairs, traditional), text=new["text"],
               highlights=highlights, quote="".join(highlights) or cite.get("quote", ""))
    return out, pairs


def convert_answer(plan: Plan, answer: dict[str, Any], traditional: bool) -> dict[str, Any]:
    """A stored answer dict re-expressed in the other script, without asking again.

    Quotations, section titles and clause headings are swapped for the plan's own text
    in that script; only the words around them go through OpenCC."""
    out = dict(answer)
    pairs: list[tuple[str, str]] = []
    for key in ("citations", "related"):
        converted = []
        for cite in answer.get(key, []):
            new, swapped = _citation_pairs(plan, cite, traditional)
            pairs.extend(swapped)
            converted.append(new)
        out[key] = converted
    out["answer"] = _swap_exact(answer.get("answer", ""), pairs, traditional)
    return out


# ---------------------------------------------------------------- rendering (pure)


def _esc(text: str) -> str:
    # Chat messages are Markdown with inline HTML; one HTML block without blank lines
    # is passed through untouched, so newlines become <br> and text is escaped.
    return html.escape(text or "", quote=True).replace("\r", "").replace("\n", "<br>")


def highlight(text: str, sentences: list[str] | tuple[str, ...]) -> str:
    """Escaped `text` with each of `sentences` wrapped in <mark>."""
    spans: list[tuple[int, int]] = []
    for s in sorted({s for s in sentences if s}, key=len, reverse=True):
        start = text.find(s)
        while start >= 0:
            end = start + len(s)
            if not any(a < end and start < b for a, b in spans):
                spans.append((start, end))
            start = text.find(s, end)
    out, pos = [], 0
    for a, b in sorted(spans):
        out.append(_esc(text[pos:a]))
        out.append(f"<mark>{_esc(text[a:b])}</mark>")
        pos = b
    out.append(_esc(text[pos:]))
    return "".join(out)


def render_card(cite: dict[str, Any], kind: str = "source") -> str:
    """One collapsible source card: ref, section title › clause heading, full text."""
    ref = _esc(cite.get("ref", ""))
    title = _esc(cite.get("title", ""))
    body = highlight(cite.get("text") or cite.get("quote", ""), cite.get("highlights") or ())
    return (
        f'<details class="pq-card pq-card-{kind}" data-ref="{ref}">'
        f'<summary><span class="pq-ref">{ref}</span><span class="pq-title">{title}</span>'
        f"</summary>"
        f'<div class="pq-clause-text">{body}</div></details>'
    )


def render_answer(answer: dict[str, Any], shown: str | None = None) -> str:
    """A chat message for an answer. `shown` is the part revealed so far while streaming;
    cards come only with the complete answer."""
    found = bool(answer.get("found"))
    streaming = shown is not None
    text = answer.get("answer", "") if shown is None else shown
    classes = "pq-answer " + ("pq-found" if found else "pq-notfound")
    if streaming:
        classes += " pq-streaming"
    label = "" if found else '<span class="pq-badge">方案未涉及</span>'
    parts = [f'<div class="{classes}">{label}<div class="pq-text">{_esc(text)}</div></div>']
    if not streaming:
        cites = answer.get("citations") if found else answer.get("related")
        if cites:
            kind = "source" if found else "related"
            heading = "出处（点开查看条款全文）" if found else "可能相关的条款"
            cards = "".join(render_card(c, kind) for c in cites)
            parts.append(f'<div class="pq-sources pq-sources-{kind}">'
                         f'<div class="pq-sources-label">{heading}</div>{cards}</div>')
    return "".join(parts)


def render_notice(kind: str, text_html: str) -> str:
    """A notice box; `text_html` is trusted markup built here, never user input."""
    return f'<div class="pq-notice pq-notice-{kind}" role="status">{text_html}</div>'


def render_outline(plan: Plan, traditional: bool, query: str = "") -> str:
    """The plan's outline (sections → clauses by heading) as nested <details>;
    each clause opens to its full text. `query` filters (any script)."""
    q = to_simplified(clean_input(query or ""))
    terms = [t for t in q.split(" ") if t]

    def hit(*texts: str) -> bool:
        return all(any(t in x for x in texts) for t in terms)

    def mark(s: str) -> str:
        # highlight the search terms in the shown script (terms are Simplified)
        if not terms:
            return _esc(s)
        spans = []
        simp = to_simplified(s)
        if len(simp) != len(s):  # a phrase conversion moved offsets: show it unmarked
            return _esc(s)
        for t in terms:
            start = simp.find(t)
            while start >= 0:
                spans.append(s[start:start + len(t)])
                start = simp.find(t, start + len(t))
        return highlight(s, spans)

    blocks: list[str] = []
    entries: list[tuple[str, str, list[Passage]]] = []
    if plan.preamble:
        entries.append(("前言", "前言", list(plan.preamble)))
    for sec in plan.sections:
        title = sec.title if traditional else sec.title_simplified
        members = ([sec.lead] if sec.lead else []) + list(sec.clauses)
        entries.append((sec.number, f"{sec.number}、{title}", members))
    shown = 0
    for number, label, members in entries:
        items = []
        sec_hit = bool(terms) and hit(to_simplified(label))
        for p in members:
            f = p.in_script(traditional)
            if terms and not (sec_hit or hit(p.heading_simplified, p.text_simplified)):
                continue
            if p.kind == "clause":
                marker, heading = f"{p.clause}.", str(f["heading"])
            elif p.kind == "lead":
                marker = convert_script("导语", traditional)
                heading = convert_script("本部分导语", traditional)
            else:
                marker, heading = "", str(f["heading"])[:24] + "…"
            text = str(f["text"])
            items.append(
                f'<details class="pq-ol-clause" data-ref="{_esc(p.ref)}">'
                f'<summary><span class="pq-ol-num">{_esc(marker)}</span>{mark(heading)}</summary>'
                f'<div class="pq-ol-text"><div class="pq-ol-ref">{_esc(p.ref)}</div>'
                f"{mark(text)}</div></details>"
            )
        if not items:
            continue
        shown += len(items)
        is_open = " open" if terms or number in ("一", "二") else ""
        blocks.append(
            f'<details class="pq-ol-section" data-section="{number}"{is_open}>'
            f"<summary>{mark(label)}</summary>{''.join(items)}</details>"
        )
    if not blocks:
        return '<div class="pq-outline pq-outline-empty">没有找到匹配的条款，请换个关键词。</div>'
    count = f'<div class="pq-ol-count">找到 {shown} 条</div>' if terms else ""
    return f'<div class="pq-outline">{count}{"".join(blocks)}</div>'


# ---------------------------------------------------------------- input validation


class BadRequest(ValueError):
    """A request the API refuses with a 4xx; `status` says which."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def coerce_history(history: Any) -> list[tuple[str, str]]:
    """History as [(question, answer), …] from a list of pairs or a JSON string of one.

    Raises BadRequest (422) for anything else."""
    if history is None or history == "":
        return []
    if isinstance(history, str):
        try:
            history = json.loads(history)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise BadRequest("history must be a JSON list of [question, answer] pairs",
                             422) from exc
    if not isinstance(history, list | tuple):
        raise BadRequest("history must be a list of [question, answer] pairs", 422)
    if len(history) > MAX_HISTORY_TURNS:
        history = history[-MAX_HISTORY_TURNS:]  # only the recent turns matter
    pairs = []
    for turn in history:
        if (not isinstance(turn, list | tuple) or len(turn) != 2
                or not all(isinstance(x, str) for x in turn)):
            raise BadRequest("each history item must be a [question, answer] pair of strings",
                             422)
        pairs.append((turn[0], turn[1]))
    return pairs


def coerce_script(script: Any) -> str | None:
    """None, "simplified" or "traditional"; BadRequest (422) otherwise."""
    if script is None or script == "":
        return None
    if isinstance(script, str) and script.lower() in SCRIPTS:
        return script.lower()
    raise BadRequest('script must be "simplified" or "traditional"', 422)


async def read_body_limited(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing (413) more than `limit` bytes whatever Content-Length says."""
    declared = request.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        raise BadRequest(f"request body over {limit // 1024} KB", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # counted, not trusted: chunked bodies have no length header
            raise BadRequest(f"request body over {limit // 1024} KB", 413)
        chunks.append(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------- the service


#: Answers in progress at once; more requests wait for a worker (the time limit counts
#: the wait). The model itself runs one batch at a time (QueryBatcher), so this bounds
#: how many questions can meet in a batch and how many threads share the cores between
#: model steps. Measured with `make load` (20 users, 60 s, 2 cores): 8 → 64 answers/s,
#: heap +36 MB; 12 → 70/s, +51 MB; 16 → 71/s, +59 MB (each thread keeps its own malloc
#: arena). 8 keeps p95 < 500 ms and the heap growth < 50 MB.
ANSWER_WORKERS = 8
#: Open connections uvicorn serves at once; more get 503 at once instead of piling up.
MAX_CONNECTIONS = 256
@dataclass
class ChatService:
    """What the UI and the API share: the library, its readiness, the feedback log."""

    qa: PlanQA
    settings: Settings
    feedback: FeedbackLog
    startup_error: str | None = None
    startup_message_zh: str = INDEX_MISSING_ZH  # what the page says while not ready
    executor: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(
            max_workers=ANSWER_WORKERS, thread_name_prefix="planqa-ask"))

    _plan: Plan | None = None

    @property
    def ready(self) -> bool:
        return self.startup_error is None

    @property
    def plan(self) -> Plan:
        """The plan for the outline: the library's, or parsed from the text file when the
        library could not load (the outline still works without an index)."""
        if self._plan is None:
            try:
                self._plan = self.qa.plan
            except Exception:  # an unavailable index must not take the page down
                from planqa.corpus import load_plan

                self._plan = load_plan(self.settings.plan_path)
        return self._plan

    def warm_up(self) -> None:
        """Load model and index now; remember (not raise) an unavailable index."""
        from planqa.index import IndexUnavailable

        t0 = time.perf_counter()
        try:
            self.qa.warm_up()
        except IndexUnavailable as exc:
            self.startup_error = str(exc)
            logger.error("index unavailable: %s", exc)
            return
        except Exception as exc:  # a broken model must show a message, not a traceback
            self.startup_error = f"{type(exc).__name__}: {exc}"
            self.startup_message_zh = LOAD_FAILED_ZH
            logger.exception("model or index failed to load")
            return
        self.startup_error = None
        searcher = self.qa.searcher
        if self.settings.prefault_model and hasattr(searcher.embeddings, "prefault"):
            mb = searcher.embeddings.prefault() / 2**20
            logger.info("model weights resident (%.0f MB read)", mb)
        if not isinstance(searcher.embeddings, QueryBatcher):  # a shared qa: wrap once
            searcher.embeddings = QueryBatcher(searcher.embeddings)
        logger.info("model and index loaded in %.1f s", time.perf_counter() - t0)

    def submit(self, question: str, history: list[tuple[str, str]],
               script: str | None) -> concurrent.futures.Future[Answer]:
        """qa.ask on the worker pool (so a slow answer can be abandoned at the time limit)."""
        return self.executor.submit(self.qa.ask, question, history, script)

    def ask(self, question: str, history: list[tuple[str, str]],
            script: str | None) -> Answer:
        """qa.ask with the request time limit; raises TimeoutError past it."""
        future = self.submit(question, history, script)
        try:
            return future.result(timeout=self.settings.request_timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise TimeoutError(f"no answer within {self.settings.request_timeout:g} s") from exc


def _history_from_state(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["question"], t["answer"].get("answer", "")) for t in state["turns"]]


def _new_state() -> dict[str, Any]:
    return {"turns": []}


def _reveal_steps(text: str, pieces: int = 14) -> Iterator[str]:
    """Growing prefixes of `text`, cut so the answer appears in about `pieces` steps."""
    step = max(3, -(-len(text) // pieces))
    for end in range(step, len(text), step):
        yield text[:end]


# ---------------------------------------------------------------- the UI

CSS = """
.gradio-container { max-width: 1240px !important; margin: 0 auto; }
#pq-tools { justify-content: space-between; align-items: center; flex-wrap: nowrap; }
#pq-tools > * { flex: 0 0 auto !important; width: auto !important; }
#pq-header h1 { font-size: 1.45rem; margin: 0.2rem 0 0.25rem; font-weight: 600; }
.pq-side-title { font-weight: 600; font-size: 1rem; margin-bottom: 2px; }
#pq-header p { margin: 0; color: var(--body-text-color-subdued); font-size: 0.92rem; }
.pq-notice { border-radius: 8px; padding: 10px 14px; font-size: 0.92rem; margin: 4px 0; }
.pq-notice-error { background: #fdecea; border: 1px solid #f5c2c0; color: #8a1c14; }
.pq-notice-warn { background: #fff8e1; border: 1px solid #f3d98b; color: #6b4e00; }
.pq-notice code { background: rgba(0,0,0,.07); padding: 0 4px; border-radius: 4px; }
.pq-notice details { margin-top: 4px; font-size: 0.82rem; color: #555; }
.pq-answer .pq-text { line-height: 1.75; }
.pq-streaming .pq-text::after { content: "▍"; animation: pq-blink 1s steps(1) infinite; }
@keyframes pq-blink { 50% { opacity: 0; } }
.pq-notfound { border-left: 4px solid #d9822b; background: #fff6ec; padding: 8px 12px;
  border-radius: 6px; color: #5c3b12; }
.pq-badge { display: inline-block; background: #d9822b; color: #fff; font-size: 0.78rem;
  padding: 1px 8px; border-radius: 10px; margin-bottom: 4px; }
.pq-sources { margin-top: 10px; display: flex; flex-direction: column; gap: 6px; }
.pq-sources-label { font-size: 0.8rem; color: var(--body-text-color-subdued); }
.pq-card { border: 1px solid var(--border-color-primary); border-radius: 8px;
  background: var(--background-fill-primary); padding: 0; overflow: hidden; }
.pq-card-related { border-style: dashed; }
.pq-card summary { cursor: pointer; padding: 7px 10px; list-style-position: inside;
  font-size: 0.9rem; line-height: 1.5; }
.pq-card[open] summary { border-bottom: 1px solid var(--border-color-primary); }
.pq-ref { display: inline-block; font-weight: 600; background: #e8f0fe; color: #174ea6;
  border-radius: 5px; padding: 0 6px; margin-right: 6px; }
.pq-card-related .pq-ref { background: #fdf0e1; color: #8a4b0f; }
.pq-title { color: var(--body-text-color); }
.pq-clause-text { padding: 8px 12px; font-size: 0.9rem; line-height: 1.75; }
mark { background: #fff2a8; color: inherit; padding: 0 1px; border-radius: 2px; }
#pq-side { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px; }
#pq-outline { max-height: 640px; overflow-y: auto !important; }
.pq-outline details { margin: 2px 0; }
.pq-ol-section > summary { font-weight: 600; cursor: pointer; padding: 6px 4px;
  border-radius: 6px; }
.pq-ol-section > summary:hover, .pq-ol-clause > summary:hover {
  background: var(--background-fill-secondary); }
.pq-ol-clause { margin-left: 12px !important; }
.pq-ol-clause > summary { cursor: pointer; padding: 4px; font-size: 0.9rem; line-height: 1.5;
  border-radius: 6px; }
.pq-ol-num { color: #174ea6; font-weight: 600; margin-right: 4px; }
.pq-ol-text { font-size: 0.88rem; line-height: 1.75; padding: 6px 10px; margin: 2px 0 6px 4px;
  border-left: 3px solid #c6d4f2; background: var(--background-fill-secondary);
  border-radius: 0 6px 6px 0; white-space: normal; }
.pq-ol-ref { font-size: 0.78rem; color: var(--body-text-color-subdued); }
.pq-ol-count, .pq-outline-empty { font-size: 0.82rem; color: var(--body-text-color-subdued);
  padding: 2px 4px 6px; }
#pq-examples { gap: 6px; flex-wrap: wrap; }
#pq-examples button { flex: 0 1 auto !important; min-width: 0 !important; font-size: 0.85rem; }
#pq-feedback { border: 1px dashed var(--border-color-primary); border-radius: 8px; padding: 6px; }
@media (max-width: 640px) {
  #pq-header h1 { font-size: 1.15rem; }
  #pq-outline { max-height: 420px; }
  .gradio-container { padding: 6px !important; }
}
"""


def build_blocks(service: ChatService) -> gr.Blocks:
    """The chat UI. Every session gets its own history (gr.State + its own Chatbot value)."""
    plan = service.plan

    def notice_update() -> dict[str, Any]:
        value = notice_html()
        return gr.update(value=value, visible=bool(value))

    def notice_html() -> str:
        parts = []
        if service.startup_error:
            parts.append(render_notice(
                "error",
                f"{service.startup_message_zh}<details><summary>技术详情</summary>"
                f"{_esc(service.startup_error)}</details>"))
        if service.feedback.error:
            parts.append(render_notice(
                "warn", "提示：反馈记录暂时无法保存（日志文件不可写），问答不受影响。"))
        return "".join(parts)

    def respond(question: str, chat: list[dict[str, Any]], state: dict[str, Any],
                script_choice: str):
        """Answer one question, revealing the text in pieces, then its source cards."""
        question = (question or "").strip()
        if not question:
            yield gr.update(), chat, state, notice_update()
            return
        traditional = script_choice == TRADITIONAL
        chat = [*chat, {"role": "user", "content": _esc(question)},
                {"role": "assistant", "content": render_answer(
                    {"found": True, "answer": ""}, shown="正在查找方案原文…")}]
        yield "", chat, state, gr.update()
        if not service.ready:
            chat[-1]["content"] = render_notice("error", service.startup_message_zh)
            yield "", chat, state, notice_update()
            return
        script = "traditional" if traditional else "simplified"
        try:
            answer = service.ask(question, _history_from_state(state), script)
        except ValueError as exc:
            chat[-1]["content"] = render_notice("warn", _esc(str(exc)))
            yield "", chat, state, gr.update()
            return
        except TimeoutError:
            chat[-1]["content"] = render_notice("warn", "回答超时，请稍后再试或换个问法。")
            yield "", chat, state, gr.update()
            return
        except Exception as exc:  # IndexUnavailable or a bug: a message, never a traceback
            logger.exception("answering failed")
            chat[-1]["content"] = render_notice(
                "error", INDEX_MISSING_ZH if "make index" in str(exc) else
                "回答时出错，请稍后再试。")
            yield "", chat, state, notice_update()
            return
        data = answer.to_dict()
        for shown in _reveal_steps(data["answer"]):
            chat[-1]["content"] = render_answer(data, shown=shown)
            yield "", chat, state, gr.update()
            time.sleep(0.035)  # pace the reveal: the extractive answer is instant
        chat[-1]["content"] = render_answer(data)
        turn = {"id": uuid.uuid4().hex, "question": question, "answer": data,
                "message_index": len(chat) - 1}
        state = {"turns": [*state["turns"], turn]}
        yield "", chat, state, gr.update()

    def new_conversation():
        return [], _new_state(), "", gr.update(visible=False), None, ""

    def switch_script(script_choice: str, chat: list[dict[str, Any]], state: dict[str, Any],
                      query: str):
        """Re-express outline, answers and cards in the chosen script (no new asks)."""
        traditional = script_choice == TRADITIONAL
        turns, chat = [], list(chat)
        for turn in state["turns"]:
            data = convert_answer(plan, turn["answer"], traditional)
            turns.append({**turn, "answer": data})
            i = turn["message_index"]
            if 0 <= i < len(chat):
                chat[i] = {**chat[i], "content": render_answer(data)}
        examples = [gr.update(value=convert_script(q, traditional)) for q in EXAMPLE_QUESTIONS]
        return (render_outline(plan, traditional, query), chat, {"turns": turns}, *examples)

    def turn_at(state: dict[str, Any], index: Any) -> dict[str, Any] | None:
        i = index[0] if isinstance(index, list | tuple) else index
        return next((t for t in state["turns"] if t["message_index"] == i), None)

    def on_like(state: dict[str, Any], data: gr.LikeData):
        """A thumb on an answer: log the vote now, then offer an optional comment."""
        turn = turn_at(state, data.index)
        if turn is None:
            return gr.update(visible=False), None, gr.update(), notice_update()
        if data.liked is True or data.liked == "Like":
            vote = "useful"
        elif data.liked is False or data.liked == "Dislike":
            vote = "not_useful"
        else:
            vote = "none"  # the thumb was taken back
        service.feedback.append(feedback_record(turn, vote))
        pending = {"id": turn["id"], "vote": vote}
        label = "感谢反馈！" + ("可以补充说明（可选）：" if vote != "none" else "")
        return (gr.update(visible=vote != "none"), pending, gr.update(value="", label=label),
                notice_update())

    def on_comment(comment: str, pending: dict[str, Any] | None, state: dict[str, Any]):
        comment = clean_input(comment or "")[:MAX_COMMENT_CHARS]
        if pending and comment:
            turn = next((t for t in state["turns"] if t["id"] == pending["id"]), None)
            if turn is not None:
                service.feedback.append(feedback_record(turn, pending["vote"], comment))
        if service.feedback.error:
            gr.Warning("反馈未能保存（日志文件不可写），问答不受影响。")
        else:
            gr.Info("意见已记录，谢谢！")
        return gr.update(visible=False), None, "", notice_update()

    def api_ask(question: str, history: list[list[str]] | str | None = None,
                script: str | None = None) -> dict:
        """Answer a question about the plan, quoting section and clause.

        Args:
            question: the question, in Chinese (Simplified or Traditional).
            history: earlier turns, oldest first, as [[question, answer], …] or that as JSON.
            script: "simplified" or "traditional"; empty = follow the question's script.
        Returns:
            The answer: {"answer", "found", "citations", "related", "question", "source"}.
        """
        if not service.ready:
            raise gr.Error(service.startup_error or "index unavailable")
        try:
            pairs, chosen = coerce_history(history), coerce_script(script)
            return service.ask(question if isinstance(question, str) else "", pairs,
                               chosen).to_dict()
        except (ValueError, TimeoutError) as exc:
            raise gr.Error(str(exc)) from exc

    initial_outline = render_outline(plan, False)
    initial_notice = notice_html()
    with gr.Blocks(title="科协改革方案问答", analytics_enabled=False) as demo:
        state = gr.State(_new_state())
        pending = gr.State(None)
        gr.HTML(
            "<h1>《科协系统深化改革实施方案》问答</h1>"
            "<p>用中文提问；每个回答都引用方案原文，并注明所在部分（一至五）和条款。</p>",
            elem_id="pq-header")
        notice = gr.HTML(initial_notice, elem_id="pq-notice", visible=bool(initial_notice))
        with gr.Row(equal_height=False, elem_id="pq-main"):
            with gr.Column(scale=3, min_width=340, elem_id="pq-chat-col"):
                with gr.Row(elem_id="pq-tools", equal_height=True):
                    script = gr.Radio([SIMPLIFIED, TRADITIONAL], value=SIMPLIFIED,
                                      show_label=False, container=False, elem_id="pq-script",
                                      min_width=0)
                    new_chat = gr.Button("＋ 新对话", size="sm", elem_id="pq-new", min_width=0)
                chatbot = gr.Chatbot(
                    show_label=False, elem_id="pq-chat", height="min(64vh, 620px)",
                    buttons=[], feedback_options=("Like", "Dislike"),
                    placeholder="请在下方输入问题，或点击一个示例问题。",
                    autoscroll=True, layout="bubble", latex_delimiters=[],
                )
                with gr.Row(equal_height=True, elem_id="pq-input"):
                    question = gr.Textbox(
                        show_label=False, container=False, scale=5, min_width=180,
                        placeholder="输入关于方案的问题，按回车发送", lines=1, max_lines=4,
                        elem_id="pq-question", interactive=service.ready, autofocus=True,
                    )
                    send = gr.Button("发送", variant="primary", scale=1, min_width=70,
                                     elem_id="pq-send")
                with gr.Row(elem_id="pq-feedback", visible=False) as fb_row:
                    comment = gr.Textbox(label="感谢反馈！可以补充说明（可选）：", lines=1,
                                         max_lines=3, scale=5, min_width=180,
                                         elem_id="pq-comment")
                    fb_send = gr.Button("提交意见", scale=1, min_width=80, elem_id="pq-fb-send")
                gr.HTML('<div class="pq-sources-label">示例问题（点击即问）</div>',
                        elem_id="pq-examples-label")
                with gr.Row(elem_id="pq-examples"):
                    example_buttons = [
                        gr.Button(q, size="sm", variant="secondary", elem_classes="pq-example",
                                  min_width=0)
                        for q in EXAMPLE_QUESTIONS
                    ]
            with gr.Column(scale=2, min_width=300, elem_id="pq-side"):
                gr.HTML('<div class="pq-side-title">方案目录</div>'
                        '<div class="pq-sources-label">点开条款查看全文；可按关键词筛选。</div>')
                search = gr.Textbox(show_label=False, container=False, max_lines=1,
                                    placeholder="搜索条款，如：学会、编制、科普",
                                    elem_id="pq-search")
                outline = gr.HTML(initial_outline, elem_id="pq-outline")

        chat_io: dict[str, Any] = {
            "outputs": [question, chatbot, state, notice], "api_visibility": "private",
            "show_progress": "hidden", "concurrency_id": "answer"}
        question.submit(respond, [question, chatbot, state, script], **chat_io)
        send.click(respond, [question, chatbot, state, script], **chat_io)
        for btn in example_buttons:
            btn.click(respond, [btn, chatbot, state, script], **chat_io)
        reset_io: dict[str, Any] = {
            "outputs": [chatbot, state, question, fb_row, pending, comment],
            "api_visibility": "private", "queue": False}
        new_chat.click(new_conversation, None, **reset_io)
        chatbot.clear(new_conversation, None, **reset_io)
        script.change(switch_script, [script, chatbot, state, search],
                      [outline, chatbot, state, *example_buttons], api_visibility="private",
                      queue=False)
        search.change(lambda q, s: render_outline(plan, s == TRADITIONAL, q), [search, script],
                      outline, api_visibility="private", queue=False, trigger_mode="always_last")
        chatbot.like(on_like, [state], [fb_row, pending, comment, notice],
                     api_visibility="private", queue=False)
        comment_io: dict[str, Any] = {"outputs": [fb_row, pending, comment, notice],
                                      "api_visibility": "private", "queue": False}
        fb_send.click(on_comment, [comment, pending, state], **comment_io)
        comment.submit(on_comment, [comment, pending, state], **comment_io)
        demo.load(notice_update, None, notice, api_visibility="private", queue=False)
        gr.api(api_ask, api_name="ask", concurrency_id="answer")
    # A chat answer holds its slot through the paced reveal (~0.5 s of sleeping); the CPU
    # work is bounded by the service's workers and its one model thread anyway. So the
    # queue gets as many slots as there are workers (it had 4: 20 staff waited in line).
    demo.queue(default_concurrency_limit=ANSWER_WORKERS)
    return demo


# ---------------------------------------------------------------- the FastAPI app


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def _read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (size-limited); BadRequest otherwise."""
    body = await read_body_limited(request)
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("body must be a JSON object (UTF-8)") from exc
    except RecursionError as exc:  # e.g. 30 000 nested "[": fits in 64 KB, was a 500
        raise BadRequest("body is nested too deeply") from exc
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object", 422)
    return payload


def _add_api_routes(app: FastAPI, service: ChatService) -> None:
    settings = service.settings

    def _check_token(request: Request) -> JSONResponse | None:
        """401 unless the bearer token matches (when PLANQA_API_TOKEN is set)."""
        if not settings.api_token:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
                token.strip().encode(), settings.api_token.encode()):
            return None
        return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.get("/api/health")
    async def health() -> JSONResponse:
        """{"status": "ok"} once model and index are loaded; 503 otherwise."""
        if not service.ready:
            return JSONResponse({"status": "unavailable", "error": service.startup_error,
                                 "hint": "make index"}, status_code=503)
        plan = service.plan
        return JSONResponse({
            "status": "ok",
            "version": __version__,
            "sections": len(plan.sections),
            "passages": len(plan.passages),
            "feedback_log_writable": service.feedback.error is None,
        })

    @app.post("/api/ask")
    async def ask(request: Request) -> JSONResponse:
        """JSON {"question", "history"?, "script"?} → Answer.to_dict()."""
        if (denied := _check_token(request)) is not None:
            return denied
        try:
            payload = await _read_json_object(request)
            question = payload.get("question")
            if not isinstance(question, str):
                raise BadRequest('"question" is required and must be a string', 422)
            if not clean_input(question):
                raise BadRequest('"question" is empty', 422)
            history = coerce_history(payload.get("history"))
            script = coerce_script(payload.get("script"))
        except BadRequest as exc:
            return _error(exc.status, str(exc))
        if not service.ready:
            return _error(503, service.startup_error or "index unavailable", hint="make index")
        future = service.submit(question, history, script)
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(future),
                                            timeout=settings.request_timeout)
        except TimeoutError:
            future.cancel()
            return _error(504, f"no answer within {settings.request_timeout:g} s")
        except ValueError as exc:
            return _error(422, str(exc))
        except Exception as exc:
            from planqa.index import IndexUnavailable

            if isinstance(exc, IndexUnavailable):
                return _error(503, str(exc), hint="make index")
            logger.exception("answering failed")  # a bug, not a bad request
            return _error(500, "internal error while answering")
        return JSONResponse(answer.to_dict())

    @app.post("/api/feedback")
    async def feedback(request: Request) -> JSONResponse:
        """JSON {"question", "answer", "vote": "useful"|"not_useful", "comment"?, "citations"?}
        appended to the feedback log; 503 when the log cannot be written."""
        if (denied := _check_token(request)) is not None:
            return denied
        try:
            payload = await _read_json_object(request)
            record = {k: payload.get(k) for k in ("question", "answer")}
            if not all(isinstance(v, str) and v.strip() for v in record.values()):
                raise BadRequest('"question" and "answer" are required strings', 422)
            vote = payload.get("vote")
            if vote not in VOTES:
                raise BadRequest(f'"vote" must be one of {", ".join(VOTES)}', 422)
            comment = payload.get("comment") or ""
            cites = payload.get("citations") or []
            if not isinstance(comment, str) or not isinstance(cites, list):
                raise BadRequest('"comment" must be a string and "citations" a list', 422)
        except BadRequest as exc:
            return _error(exc.status, str(exc))
        turn = {"id": str(payload.get("id") or uuid.uuid4().hex)[:64],
                "question": record["question"],
                "answer": {"answer": record["answer"], "found": payload.get("found"),
                           "citations": [c for c in cites if isinstance(c, dict)]}}
        ok = await asyncio.to_thread(service.feedback.append,
                                     feedback_record(turn, vote, clean_input(comment)))
        if not ok:
            return _error(503, "feedback log is not writable; the answer service is unaffected")
        return JSONResponse({"saved": True, "id": turn["id"]})

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def api_not_found(rest: str) -> JSONResponse:
        # A known route reached with the wrong method lands here too (the catch-all
        # matches every method): answer 405 for those, 404 for the rest.
        allowed = {"ask": "POST", "feedback": "POST", "health": "GET"}.get(rest.strip("/"))
        if allowed:
            return JSONResponse({"error": f"method not allowed; use {allowed}"},
                                status_code=405, headers={"Allow": allowed})
        return _error(404, "no such API route; use POST /api/ask or GET /api/health")

    @app.exception_handler(StarletteHTTPException)
    async def json_http_errors(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # e.g. GET /api/ask → 405: keep the {"error": …} shape on our own routes
        return _error(exc.status_code, str(exc.detail))


def _parse_auth(auth: str) -> tuple[str, str] | None:
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise ValueError('PLANQA_AUTH must look like "user:password"')
    return user, password


def create_app(qa: PlanQA | None = None, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app with the JSON routes and the Gradio chat mounted at "/".

    Loads model and index before returning (an unavailable index is shown on the page
    and answered with 503 by the API, not raised). `qa` defaults to PlanQA(settings)."""
    settings = settings or Settings.from_env()
    if qa is None:
        from planqa.chain import PlanQA

        qa = PlanQA(settings)
    feedback = FeedbackLog(settings.feedback_log)
    feedback.check()
    service = ChatService(qa=qa, settings=settings, feedback=feedback)
    service.warm_up()

    app = FastAPI(title="planqa", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.service = service
    _add_api_routes(app, service)  # before the mount: "/" would shadow them
    demo = build_blocks(service)
    theme = gr.themes.Default(font=list(UI_FONTS), font_mono=list(MONO_FONTS))
    return gr.mount_gradio_app(
        app, demo, path="/",
        auth=_parse_auth(settings.auth),
        auth_message="请登录后使用方案问答。" if settings.auth else None,
        root_path=settings.root_path or None,
        theme=theme, css=CSS, footer_links=[], run_history=False, show_error=True,
        ssr_mode=False, pwa=False, mcp_server=False,
    )


def serve(settings: Settings | None = None) -> None:
    """Build the app (model and index loaded), then serve it with uvicorn until stopped.

    Prints "ready at http://host:port/…" once the socket accepts connections."""
    import uvicorn

    settings = settings or Settings.from_env()
    # Our own progress at INFO; libraries (faiss, sentence-transformers) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    app = create_app(settings=settings)
    service: ChatService = app.state.service
    url = f"http://{settings.host}:{settings.port}/"
    if settings.root_path:  # the proxy strips the prefix: the server itself answers at "/"
        url += f" (public path {settings.root_path.rstrip('/')}/ behind the reverse proxy)"

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                status = "" if service.ready else " (index unavailable: run `make index`)"
                print(f"ready at {url}{status}", flush=True)

    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            root_path=settings.root_path, log_level="warning",
                            proxy_headers=True, limit_concurrency=MAX_CONNECTIONS)
    _Server(config).run()
