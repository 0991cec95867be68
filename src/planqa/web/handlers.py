"""What the chat page does when staff act: ask (the answer revealed in pieces), ask
again (重试), start over, switch 简体/繁體, search the outline, vote and comment, keep the
conversation in the browser across a reload; and api_name="ask".

`Handlers` holds the shared ChatService; each session's state is passed in and out.
"""

from __future__ import annotations

import html
import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import gradio as gr

from planqa.errors import IndexUnavailable, InvalidQuestion
from planqa.text import clean_input
from planqa.web.api import coerce_history, coerce_script
from planqa.web.convert import convert_answer, convert_script
from planqa.web.feedback import MAX_COMMENT_CHARS, feedback_record
from planqa.web.render import esc, render_answer, render_notice, render_outline
from planqa.web.service import INDEX_MISSING_ZH, ChatService

logger = logging.getLogger(__name__)

SIMPLIFIED, TRADITIONAL = "简体", "繁體"
#: Pause between the pieces of an answer as it is revealed (the extractive one is instant).
REVEAL_PAUSE = 0.035
#: Turns kept in the browser (localStorage holds ~5 MB; a turn with its cards ~10 KB).
MAX_SAVED_TURNS = 40
#: Format of the saved conversation; a value of another version is not restored.
SAVED_VERSION = 1


# ---------------------------------------------------------------- session state


def new_state() -> dict[str, Any]:
    """A session's state: its turns, each {"id", "question", "answer", "message_index"}."""
    return {"turns": []}


def history_from_state(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["question"], t["answer"].get("answer", "")) for t in state["turns"]]


def _text_of(content: Any) -> str:
    """A chat message's text: Gradio passes content as a list of parts ({"type", "text"})."""
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        return "".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return ""


def _question_of(message: dict[str, Any]) -> str:
    """The question as typed, back from a user message (escaped, newlines as <br>)."""
    return html.unescape(_text_of(message.get("content")).replace("<br>", "\n"))


# ---------------------------------------------------------------- the saved conversation


def saved_value(state: dict[str, Any], script_choice: str, user: str | None) -> dict[str, Any]:
    """What the browser keeps (gr.BrowserState, localStorage): the last turns as asked and
    answered, the script shown, and whose they are (the login name, "" without login)."""
    turns = [{"id": t["id"], "question": t["question"], "answer": t["answer"]}
             for t in state["turns"][-MAX_SAVED_TURNS:]]
    return {"v": SAVED_VERSION, "user": user or "", "script": script_choice, "turns": turns}


_ID = re.compile(r"[0-9a-f]{32}")


def _clean_citation(c: Any) -> dict[str, Any] | None:
    if not isinstance(c, dict) or not isinstance(c.get("ref"), str):
        return None
    out: dict[str, Any] = {k: c[k] for k in ("section", "clause", "ref", "title", "quote",
                                              "text", "passage_id")
                           if isinstance(c.get(k), str)}
    marks = c.get("highlights")
    out["highlights"] = [h for h in marks if isinstance(h, str)] if isinstance(marks, list) else []
    if isinstance(c.get("score"), int | float) and not isinstance(c.get("score"), bool):
        out["score"] = float(c["score"])
    return out


def _clean_answer(a: Any) -> dict[str, Any] | None:
    if not isinstance(a, dict) or not isinstance(a.get("answer"), str):
        return None
    out: dict[str, Any] = {"answer": a["answer"], "found": a.get("found") is True}
    for key in ("citations", "related"):
        items = a.get(key) if isinstance(a.get(key), list) else []
        out[key] = [c for c in map(_clean_citation, items) if c is not None]
    for key in ("question", "source"):
        out[key] = a[key] if isinstance(a.get(key), str) else ""
    return out


def restore_turns(value: Any, user: str | None) -> list[dict[str, Any]]:
    """The turns of a saved conversation (saved_value), checked: it comes back from the
    browser, so anything of another shape, version or user is dropped, never trusted.
    Each turn gets its message_index in the rebuilt chat (user, answer, user, …)."""
    if (not isinstance(value, dict) or value.get("v") != SAVED_VERSION
            or value.get("user") != (user or "") or not isinstance(value.get("turns"), list)):
        return []
    turns = []
    for t in value["turns"][-MAX_SAVED_TURNS:]:
        if not isinstance(t, dict) or not isinstance(t.get("question"), str):
            continue
        question = t["question"].strip()  # as typed: it is escaped wherever it is shown
        answer = _clean_answer(t.get("answer"))
        if not question or answer is None:
            continue
        tid = t.get("id") if isinstance(t.get("id"), str) and _ID.fullmatch(t["id"]) else None
        turns.append({"id": tid or uuid.uuid4().hex, "question": question, "answer": answer,
                      "message_index": 2 * len(turns) + 1})
    return turns


def chat_from_turns(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat messages for `turns` (question, rendered answer, …)."""
    chat: list[dict[str, Any]] = []
    for t in turns:
        chat += [{"role": "user", "content": esc(t["question"])},
                 {"role": "assistant", "content": render_answer(t["answer"],
                                                                asked=t["question"])}]
    return chat


def reveal_steps(text: str, pieces: int = 14) -> Iterator[str]:
    """Growing prefixes of `text`, cut so the answer appears in about `pieces` steps."""
    step = max(3, -(-len(text) // pieces))
    for end in range(step, len(text), step):
        yield text[:end]


# ---------------------------------------------------------------- event handlers


class Handlers:
    """The page's event handlers over one service; each session's state is passed in."""

    def __init__(self, service: ChatService) -> None:
        self.service = service
        self.plan = service.plan

    # -- notices ---------------------------------------------------------------

    def notice_html(self) -> str:
        """The service's problems, for the box under the title ("" when there are none)."""
        parts = []
        if self.service.startup_error:
            parts.append(render_notice(
                "error",
                f"{self.service.startup_message_zh}<details><summary>技术详情</summary>"
                f"{esc(self.service.startup_error)}</details>"))
        if self.service.feedback.error:
            parts.append(render_notice(
                "warn", "提示：反馈记录暂时无法保存（日志文件不可写），问答不受影响。"))
        return "".join(parts)

    def notice_update(self) -> dict[str, Any]:
        value = self.notice_html()
        return gr.update(value=value, visible=bool(value))

    # -- asking ----------------------------------------------------------------

    def _answer(self, question: str, state: dict[str, Any], traditional: bool
                ) -> tuple[dict[str, Any] | None, str, bool]:
        """(answer dict, "", False), or (None, a notice instead, whether it is the
        service's fault so the box under the title is refreshed)."""
        if not self.service.ready:
            return None, render_notice("error", self.service.startup_message_zh), True
        script = "traditional" if traditional else "simplified"
        try:
            answer = self.service.ask(question, history_from_state(state), script)
        except InvalidQuestion as exc:
            return None, render_notice("warn", esc(str(exc))), False
        except TimeoutError:
            return None, render_notice("warn", "回答超时，请稍后再试或换个问法。"), False
        except Exception as exc:  # IndexUnavailable or a bug: a message, never a traceback
            logger.exception("answering failed")
            text = (INDEX_MISSING_ZH if isinstance(exc, IndexUnavailable)
                    else "回答时出错，请稍后再试。")
            return None, render_notice("error", text), True
        return answer.to_dict(), "", False

    def respond(self, question: str, chat: list[dict[str, Any]], state: dict[str, Any],
                script_choice: str):
        """Answer one question, revealing the text in pieces, then its source cards.

        Yields (question box, chat, state, notice box)."""
        question = (question or "").strip()
        if not question:
            yield gr.update(), chat, state, self.notice_update()
            return
        chat = [*chat, {"role": "user", "content": esc(question)},
                {"role": "assistant", "content": render_answer(
                    {"found": True, "answer": ""}, shown="正在查找方案原文…")}]
        yield "", chat, state, gr.update()
        data, notice, service_fault = self._answer(question, state,
                                                   script_choice == TRADITIONAL)
        if data is None:
            chat[-1]["content"] = notice
            yield "", chat, state, self.notice_update() if service_fault else gr.update()
            return
        for shown in reveal_steps(data["answer"]):
            chat[-1]["content"] = render_answer(data, shown=shown)
            yield "", chat, state, gr.update()
            time.sleep(REVEAL_PAUSE)
        chat[-1]["content"] = render_answer(data, asked=question)
        turn = {"id": uuid.uuid4().hex, "question": question, "answer": data,
                "message_index": len(chat) - 1}
        yield "", chat, {"turns": [*state["turns"], turn]}, gr.update()

    def regenerate(self, chat: list[dict[str, Any]], state: dict[str, Any],
                   script_choice: str, data: gr.RetryData):
        """重试 on an answer: drop that turn (and any after it) and ask its question again
        with the history before it. Yields as `respond` does."""
        index = data.index[0] if isinstance(data.index, list | tuple) else data.index
        users = [i for i, m in enumerate(chat)
                 if m.get("role") == "user" and i <= int(index or 0)]
        if not users:
            yield gr.update(), chat, state, gr.update()
            return
        i = users[-1]
        turn = next((t for t in state["turns"] if t["message_index"] == i + 1), None)
        question = turn["question"] if turn else _question_of(chat[i])
        kept = {"turns": [t for t in state["turns"] if t["message_index"] < i]}
        yield from self.respond(question, chat[:i], kept, script_choice)

    def api_ask(self, question: str, history: list[list[str]] | str | None = None,
                script: str | None = None) -> dict:
        """Answer a question about the plan, quoting section and clause.

        Args:
            question: the question, in Chinese (Simplified or Traditional).
            history: earlier turns, oldest first, as [[question, answer], …] or that as JSON.
            script: "simplified" or "traditional"; empty = follow the question's script.
        Returns:
            The answer: {"answer", "found", "citations", "related", "question", "source"}.
        """
        if not self.service.ready:
            raise gr.Error(self.service.startup_error or "index unavailable")
        try:
            pairs, chosen = coerce_history(history), coerce_script(script)
            return self.service.ask(question if isinstance(question, str) else "", pairs,
                                    chosen).to_dict()
        except (InvalidQuestion, TimeoutError) as exc:
            raise gr.Error(str(exc)) from exc

    # -- the conversation and the display --------------------------------------

    def new_conversation(self):
        """(chat, state, question box, feedback row, pending vote, comment box), emptied."""
        return [], new_state(), "", gr.update(visible=False), None, ""

    def save(self, state: dict[str, Any], script_choice: str,
             request: gr.Request) -> dict[str, Any]:
        """The value the browser keeps after each change (see saved_value)."""
        return saved_value(state, script_choice, getattr(request, "username", None))

    def restore(self, saved: Any, request: gr.Request):
        """On page load: the conversation this browser kept for this user, if any.
        Returns (chat, state, script switch)."""
        turns = restore_turns(saved, getattr(request, "username", None))
        if not turns:
            return [], new_state(), gr.update()
        script = saved.get("script")
        return (chat_from_turns(turns), {"turns": turns},
                script if script in (SIMPLIFIED, TRADITIONAL) else gr.update())

    def switch_script(self, script_choice: str, chat: list[dict[str, Any]],
                      state: dict[str, Any], query: str):
        """Re-express outline, answers and cards in the chosen script (no new asks)."""
        traditional = script_choice == TRADITIONAL
        turns, chat = [], list(chat)
        for turn in state["turns"]:
            data = convert_answer(self.plan, turn["answer"], traditional)
            turns.append({**turn, "answer": data})
            i = turn["message_index"]
            if 0 <= i < len(chat):
                chat[i] = {**chat[i], "content": render_answer(data, asked=turn["question"])}
        examples = [gr.update(value=convert_script(q, traditional))
                    for q in self.plan.profile.examples]
        return (render_outline(self.plan, traditional, query), chat, {"turns": turns},
                *examples)

    def search_outline(self, query: str, script_choice: str) -> str:
        return render_outline(self.plan, script_choice == TRADITIONAL, query)

    # -- feedback --------------------------------------------------------------

    def on_like(self, state: dict[str, Any], data: gr.LikeData):
        """A thumb on an answer: log the vote now, then offer an optional comment."""
        i = data.index[0] if isinstance(data.index, list | tuple) else data.index
        turn = next((t for t in state["turns"] if t["message_index"] == i), None)
        if turn is None:
            return gr.update(visible=False), None, gr.update(), self.notice_update()
        if data.liked is True or data.liked == "Like":
            vote = "useful"
        elif data.liked is False or data.liked == "Dislike":
            vote = "not_useful"
        else:
            vote = "none"  # the thumb was taken back
        self.service.feedback.append(feedback_record(turn, vote))
        pending = {"id": turn["id"], "vote": vote}
        label = "感谢反馈！" + ("可以补充说明（可选）：" if vote != "none" else "")
        return (gr.update(visible=vote != "none"), pending, gr.update(value="", label=label),
                self.notice_update())

    def on_comment(self, comment: str, pending: dict[str, Any] | None,
                   state: dict[str, Any]):
        """The optional comment after a vote, logged as a second line for that answer."""
        comment = clean_input(comment or "")[:MAX_COMMENT_CHARS]
        if pending and comment:
            turn = next((t for t in state["turns"] if t["id"] == pending["id"]), None)
            if turn is not None:
                self.service.feedback.append(feedback_record(turn, pending["vote"], comment))
        if self.service.feedback.error:
            gr.Warning("反馈未能保存（日志文件不可写），问答不受影响。")
        else:
            gr.Info("意见已记录，谢谢！")
        return gr.update(visible=False), None, "", self.notice_update()


__all__ = ["MAX_SAVED_TURNS", "SIMPLIFIED", "TRADITIONAL", "Handlers", "chat_from_turns",
           "new_state", "restore_turns", "saved_value"]
