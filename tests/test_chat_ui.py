"""The chat page's parts without a browser: what 复制 and 导出 take from an answer, the
conversation the browser keeps (and what comes back from it), the page's script route,
and 重试 and the restore on load, on the session's app (`api`, the real PlanQA). The
browser test (test_browser.py) drives the same features in chromium."""

from __future__ import annotations

import html
import re
from types import SimpleNamespace

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from planqa.web.handlers import (
    MAX_SAVED_TURNS,
    SIMPLIFIED,
    TRADITIONAL,
    Handlers,
    chat_from_turns,
    new_state,
    restore_turns,
    saved_value,
)
from planqa.web.render import answer_markdown, answer_plain_text, render_answer
from planqa.web.ui import STATIC_PREFIX, add_static_routes, head

# the session's app (`api`): one real PlanQA shared with the other web tests
pytest_plugins = ["web_fixtures"]

Q_STAFF, Q_REFUSE = "事业编制要精简到多少名？", "科协现任主席是谁？"
CITE = {"section": "二", "clause": "2", "ref": "二、2", "title": "机构 › 深化改革",
        "quote": "事业编制精简至1120名左右。", "highlights": ["事业编制精简至1120名左右。"],
        "text": "深化改革。事业编制精简至1120名左右。", "score": 0.9, "passage_id": "p7"}
FOUND = {"answer": "据方案第二部分第2条：\n“事业编制精简至1120名左右。”\n（出处：第二部分第2条）",
         "found": True, "citations": [CITE], "related": [], "question": "编制多少？",
         "source": "extractive"}
REFUSAL = {"answer": "方案中没有关于这个问题的规定。", "found": False, "citations": [],
           "related": [CITE], "question": "主席是谁？", "source": "extractive"}


def _hidden(message: str, kind: str) -> str:
    """The text a hidden .pq-data-<kind> element gives the page's script."""
    m = re.search(rf'<div class="pq-data pq-data-{kind}">(.*?)</div>', message, re.S)
    assert m, kind
    return html.unescape(m.group(1))


def test_copy_text_keeps_the_source() -> None:
    assert answer_plain_text(FOUND) == FOUND["answer"]  # it names its 出处 already
    assert answer_plain_text(REFUSAL) == REFUSAL["answer"] + "\n（可能相关的条款：二、2）"
    bare = {**FOUND, "answer": "总体要求如下。"}
    assert answer_plain_text(bare) == "总体要求如下。\n（出处：二、2）"


def test_markdown_has_question_answer_and_refs() -> None:
    md = answer_markdown("编制  多少？\n", FOUND)
    assert md.splitlines()[0] == "## 问：编制 多少？"
    assert "（出处：第二部分第2条）" in md
    assert "**出处**\n\n- **二、2** 机构 › 深化改革\n\n> 事业编制精简至1120名左右。" in md
    assert "**可能相关的条款**" in answer_markdown("主席是谁？", REFUSAL)


def test_a_found_answer_shows_its_see_also_apart_from_its_source() -> None:
    also = {**CITE, "ref": "二、3", "title": "挂职 › 交流", "quote": "定期轮换。"}
    answer = {**FOUND, "related": [also]}
    md = answer_markdown("编制多少？", answer)
    assert md.index("**出处**") < md.index("**另见**\n\n- **二、3** 挂职 › 交流\n\n> 定期轮换。")
    message = render_answer(answer)
    source, see_also = message.index("pq-sources-source"), message.index(">另见<")
    assert source < see_also and 'data-ref="二、3"' in message[see_also:]
    assert "另见" not in render_answer(FOUND) and "**另见**" not in answer_markdown("q", FOUND)


def test_message_carries_copy_and_markdown_as_one_html_block() -> None:
    message = render_answer({**FOUND, "answer": "一\n\n<script>x</script>"}, asked="问<b>")
    assert "\n" not in message  # a blank line would end the HTML block in Markdown
    assert "<script>" not in message and "<b>" not in message
    assert _hidden(message, "copy").startswith("一\n\n<script>x</script>")
    assert _hidden(message, "md").startswith("## 问：问<b>\n\n一\n\n<script>")
    assert 'class="pq-copy"' in message and 'class="pq-goto"' in message
    streaming = render_answer(FOUND, shown="据方案")
    assert "pq-data" not in streaming and "pq-copy" not in streaming


def _turns(n: int) -> list[dict]:
    return [{"id": f"{i:032x}", "question": f"问题{i}", "answer": FOUND,
             "message_index": 2 * i + 1} for i in range(n)]


def test_saved_conversation_comes_back_as_it_was() -> None:
    saved = saved_value({"turns": _turns(3)}, TRADITIONAL, "alice")
    assert saved["script"] == TRADITIONAL and saved["user"] == "alice"
    turns = restore_turns(saved, "alice")
    assert [t["question"] for t in turns] == ["问题0", "问题1", "问题2"]
    assert [t["message_index"] for t in turns] == [1, 3, 5]
    assert [t["id"] for t in turns] == [t["id"] for t in _turns(3)]
    assert turns[0]["answer"] == FOUND
    chat = chat_from_turns(turns)
    assert [m["role"] for m in chat] == ["user", "assistant"] * 3
    assert chat[1]["content"] == render_answer(FOUND, asked="问题0")


def test_only_the_last_turns_are_kept() -> None:
    saved = saved_value({"turns": _turns(MAX_SAVED_TURNS + 5)}, SIMPLIFIED, None)
    assert len(saved["turns"]) == MAX_SAVED_TURNS
    assert restore_turns(saved, None)[0]["question"] == "问题5"


@pytest.mark.parametrize("value", [
    None, "x", [], {"v": 1}, {"v": 2, "user": "", "turns": []},
    {"v": 1, "user": "bob", "turns": [{"question": "问", "answer": FOUND}]},  # someone else's
    {"v": 1, "user": "", "turns": "no"},
])
def test_a_foreign_or_broken_saved_value_restores_nothing(value) -> None:
    assert restore_turns(value, None) == []


def test_malformed_turns_are_dropped_or_cleaned() -> None:
    value = {"v": 1, "user": "", "turns": [
        "x", {"question": 3, "answer": FOUND}, {"question": "  ", "answer": FOUND},
        {"question": "无答案"}, {"question": "坏答案", "answer": {"answer": 5}},
        {"id": "<script>", "question": "好的", "answer": {
            "answer": "文本", "found": "yes", "citations": [CITE, {"ref": 1}, "x"],
            "related": "x", "question": None, "extra": object()}},
    ]}
    (turn,) = restore_turns(value, "")
    assert turn["question"] == "好的" and re.fullmatch(r"[0-9a-f]{32}", turn["id"])
    assert turn["answer"] == {"answer": "文本", "found": False, "citations": [CITE],
                              "related": [], "question": "", "source": ""}
    assert turn["message_index"] == 1


def test_the_page_script_is_served_same_origin() -> None:
    app = FastAPI()
    add_static_routes(app)
    r = TestClient(app).get(f"/{STATIC_PREFIX}/planqa.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "pq-copy" in r.text and "eval(" not in r.text and "innerHTML" not in r.text
    # relative, so a reverse proxy's prefix is kept; no inline code
    assert head() == f'<script src="{STATIC_PREFIX}/planqa.js" defer></script>'


def _last(steps):
    """The last (question box, chat, state, notice) a handler yields."""
    *_, final = steps
    return final


def _retry(index: int) -> gr.RetryData:
    return gr.RetryData(None, {"index": index, "value": None})


def test_retry_asks_that_question_again_and_drops_what_followed(api) -> None:
    h = Handlers(api.service)
    _, chat, state, _ = _last(h.respond(Q_STAFF, [], new_state(), SIMPLIFIED))
    _, chat, state, _ = _last(h.respond(Q_REFUSE, chat, state, SIMPLIFIED))
    first_id, last_id = state["turns"][0]["id"], state["turns"][1]["id"]

    # the last answer (Gradio passes the index of its user message)
    _, again, after, _ = _last(h.regenerate(chat, state, SIMPLIFIED, _retry(2)))
    assert len(again) == 4 and [t["question"] for t in after["turns"]] == [Q_STAFF, Q_REFUSE]
    assert after["turns"][0]["id"] == first_id and after["turns"][1]["id"] != last_id
    assert after["turns"][1]["answer"] == state["turns"][1]["answer"]  # extractive: same
    assert [t["message_index"] for t in after["turns"]] == [1, 3]

    # the first answer: the turn after it goes
    _, again, after, _ = _last(h.regenerate(chat, state, SIMPLIFIED, _retry(0)))
    assert len(again) == 2 and [t["question"] for t in after["turns"]] == [Q_STAFF]
    assert "1120" in after["turns"][0]["answer"]["answer"]


def test_retry_after_a_failed_answer_reads_the_question_from_the_chat(api) -> None:
    # no turn was kept (the answer was an error notice); Gradio sends content as parts
    chat = [{"role": "user", "content": [{"type": "text", "text": "事业编制要精简到多少名&lt;"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "回答时出错"}]}]
    _, again, after, _ = _last(Handlers(api.service).regenerate(chat, new_state(), SIMPLIFIED,
                                                                _retry(1)))
    assert [t["question"] for t in after["turns"]] == ["事业编制要精简到多少名<"]
    assert "1120" in after["turns"][0]["answer"]["answer"] and len(again) == 2


def test_load_restores_only_this_users_conversation(api) -> None:
    h = Handlers(api.service)
    _, chat, state, _ = _last(h.respond(Q_STAFF, [], new_state(), SIMPLIFIED))
    saved = h.save(state, TRADITIONAL, SimpleNamespace(username="alice"))
    restored, rstate, script = h.restore(saved, SimpleNamespace(username="alice"))
    assert restored == chat and script == TRADITIONAL
    assert [t["id"] for t in rstate["turns"]] == [t["id"] for t in state["turns"]]
    restored, rstate, _ = h.restore(saved, SimpleNamespace(username="bob"))
    assert restored == [] and rstate == new_state()
