"""What the chat page does when staff act: ask (the answer revealed in pieces), start
over, switch 简体/繁體, search the outline, vote and comment; and api_name="ask".

`Handlers` holds the shared ChatService; each session's state is passed in and out.
"""

from __future__ import annotations

import logging
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


# ---------------------------------------------------------------- session state


def new_state() -> dict[str, Any]:
    """A session's state: its turns, each {"id", "question", "answer", "message_index"}."""
    return {"turns": []}


def history_from_state(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["question"], t["answer"].get("answer", "")) for t in state["turns"]]


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
        chat[-1]["content"] = render_answer(data)
        turn = {"id": uuid.uuid4().hex, "question": question, "answer": data,
                "message_index": len(chat) - 1}
        yield "", chat, {"turns": [*state["turns"], turn]}, gr.update()

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
                chat[i] = {**chat[i], "content": render_answer(data)}
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


__all__ = ["SIMPLIFIED", "TRADITIONAL", "Handlers", "new_state"]
