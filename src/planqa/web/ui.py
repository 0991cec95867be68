"""The chat page's Gradio Blocks: the theme and styles, the layout, and the wiring of
its events to the handlers (planqa.web.handlers). `build_blocks(service)` puts it together.

Every session gets its own history (a gr.State and its own Chatbot value); what the
sessions share is the ChatService. The browser keeps a copy of the conversation
(gr.BrowserState) so a reload restores it. static/planqa.js, served same-origin by
`add_static_routes` and loaded by `head()`, adds what Gradio has no hook for: 复制 and
导出 (from data the answers carry), a citation opening its clause in the outline, and
Chinese names for the chat's messages.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import gradio as gr

from planqa.web.handlers import SIMPLIFIED, TRADITIONAL, Handlers, new_state
from planqa.web.render import render_outline
from planqa.web.service import ANSWER_WORKERS, ChatService

if TYPE_CHECKING:
    from fastapi import FastAPI

#: Where the page's script is served, relative to the page (so a proxy prefix still works).
STATIC_PREFIX = "planqa-static"
#: localStorage key of the saved conversation. Gradio sends BrowserState's encryption key
#: to the page itself, so it guards nothing; restore_turns checks what comes back. A fixed
#: key (not Gradio's random one) keeps conversations across server restarts.
STORAGE_KEY, STORAGE_SECRET = "planqa-conversation", "planqa-conversation-v1"

# System and locally installed fonts only: nothing is fetched from a font CDN.
UI_FONTS = (
    "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Noto Sans CJK SC",
    "Source Han Sans SC", "WenQuanYi Micro Hei", "system-ui", "sans-serif",
)
MONO_FONTS = ("SFMono-Regular", "Consolas", "Noto Sans Mono CJK SC", "monospace")


def theme() -> gr.themes.Base:
    """Gradio's default theme on local fonts, its muted text and primary button dark
    enough to read (WCAG AA, 4.5:1) in both light and dark mode."""
    return gr.themes.Default(font=list(UI_FONTS), font_mono=list(MONO_FONTS)).set(
        body_text_color_subdued="*neutral_600",
        body_text_color_subdued_dark="*neutral_300",
        button_primary_background_fill="*primary_700",
        button_primary_background_fill_hover="*primary_800",
        button_primary_background_fill_dark="*primary_700",
        button_primary_background_fill_hover_dark="*primary_800",
        button_primary_text_color="white",
        button_primary_text_color_dark="white",
    )


def head() -> str:
    """The page's extra <head>: its script, same-origin, no inline code."""
    return f'<script src="{STATIC_PREFIX}/planqa.js" defer></script>'


@cache
def _script() -> bytes:
    return resources.files("planqa.web").joinpath("static/planqa.js").read_bytes()


def add_static_routes(app: FastAPI) -> None:
    """Serve static/planqa.js at /planqa-static/planqa.js (call before mounting Gradio
    at "/", which would shadow it)."""
    from fastapi import Response

    @app.get(f"/{STATIC_PREFIX}/planqa.js", include_in_schema=False)
    def planqa_js() -> Response:
        return Response(_script(), media_type="text/javascript; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


@cache
def css() -> str:
    """The page's styles, static/planqa.css (shipped as package data)."""
    return resources.files("planqa.web").joinpath("static/planqa.css").read_text("utf-8")


# ---------------------------------------------------------------- layout


@dataclass
class Page:
    """The components the events read and write."""

    state: gr.State
    pending: gr.State
    saved: gr.BrowserState
    notice: gr.HTML
    script: gr.Radio
    new_chat: gr.Button
    export: gr.Button
    chatbot: gr.Chatbot
    question: gr.Textbox
    send: gr.Button
    fb_row: gr.Row
    comment: gr.Textbox
    fb_send: gr.Button
    examples: list[gr.Button]
    search: gr.Textbox
    outline: gr.HTML


def _chat_column(ready: bool, examples_asked: tuple[str, ...]) -> dict[str, Any]:
    """Script switch and 新对话, the chat, the question box, feedback, example questions."""
    with gr.Row(elem_id="pq-tools", equal_height=True):
        script = gr.Radio([SIMPLIFIED, TRADITIONAL], value=SIMPLIFIED, show_label=False,
                          label="显示字体", container=False, elem_id="pq-script", min_width=0)
        with gr.Row(elem_id="pq-tools-right"):
            # no Python handler: static/planqa.js builds the file from the answers
            export = gr.Button("导出", size="sm", elem_id="pq-export", min_width=0)
            new_chat = gr.Button("＋ 新对话", size="sm", elem_id="pq-new", min_width=0)
    # Gradio's copy buttons are off: they copy the message's HTML. Each answer has its own
    # 复制 (text with its 出处); 重试 comes with the .retry listener.
    chatbot = gr.Chatbot(
        show_label=False, label="对话", elem_id="pq-chat", height="min(64vh, 620px)",
        buttons=[], feedback_options=("Like", "Dislike"),
        placeholder="请在下方输入问题，或点击一个示例问题。",
        autoscroll=True, layout="bubble", latex_delimiters=[],
    )
    with gr.Row(equal_height=True, elem_id="pq-input"):
        question = gr.Textbox(
            show_label=False, label="输入问题", container=False, scale=5, min_width=180,
            placeholder="输入关于方案的问题，按回车发送", lines=1, max_lines=4,
            elem_id="pq-question", interactive=ready, autofocus=True,
        )
        send = gr.Button("发送", variant="primary", scale=1, min_width=70, elem_id="pq-send")
    with gr.Row(elem_id="pq-feedback", visible=False) as fb_row:
        comment = gr.Textbox(label="感谢反馈！可以补充说明（可选）：", lines=1, max_lines=3,
                             scale=5, min_width=180, elem_id="pq-comment")
        fb_send = gr.Button("提交意见", scale=1, min_width=80, elem_id="pq-fb-send")
    gr.HTML('<div class="pq-sources-label">示例问题（点击即问）</div>',
            elem_id="pq-examples-label")
    with gr.Row(elem_id="pq-examples"):
        examples = [gr.Button(q, size="sm", variant="secondary", elem_classes="pq-example",
                              min_width=0)
                    for q in examples_asked]
    return {"script": script, "new_chat": new_chat, "export": export, "chatbot": chatbot,
            "question": question, "send": send, "fb_row": fb_row, "comment": comment,
            "fb_send": fb_send, "examples": examples}


def _side_column(outline_html: str) -> dict[str, Any]:
    """The plan's outline with its search box."""
    gr.HTML('<div class="pq-side-title">方案目录</div>'
            '<div class="pq-sources-label">点开条款查看全文；可按关键词筛选。</div>')
    search = gr.Textbox(show_label=False, label="搜索条款", container=False, max_lines=1,
                        placeholder="搜索条款，如：学会、编制、科普", elem_id="pq-search")
    outline = gr.HTML(outline_html, elem_id="pq-outline")
    return {"search": search, "outline": outline}


def _layout(h: Handlers) -> Page:
    """Title, notice box, and the two columns: chat (left), outline (right)."""
    state = gr.State(new_state())
    pending = gr.State(None)
    saved = gr.BrowserState(None, storage_key=STORAGE_KEY, secret=STORAGE_SECRET)
    profile, sections = h.plan.profile, h.plan.sections
    span = f"（一至{sections[-1].number}）" if sections else ""
    gr.HTML(f"<h1>{html.escape(profile.quoted_title)}问答</h1>"
            f"<p>用中文提问；每个回答都引用方案原文，并注明所在部分{span}和条款。</p>",
            elem_id="pq-header")
    initial_notice = h.notice_html()
    notice = gr.HTML(initial_notice, elem_id="pq-notice", visible=bool(initial_notice))
    with gr.Row(equal_height=False, elem_id="pq-main"):
        with gr.Column(scale=3, min_width=340, elem_id="pq-chat-col"):
            chat = _chat_column(h.service.ready, h.plan.profile.examples)
        with gr.Column(scale=2, min_width=300, elem_id="pq-side"):
            side = _side_column(render_outline(h.plan, False))
    return Page(state=state, pending=pending, saved=saved, notice=notice, **chat, **side)


# ---------------------------------------------------------------- wiring


def _wire(p: Page, h: Handlers) -> None:
    """Connect the events to the handlers. Only api_name="ask" is public (see build_blocks):
    the UI's own events are private, and only answering goes through the queue."""
    private: dict[str, Any] = {"api_visibility": "private"}
    chat_io = {"outputs": [p.question, p.chatbot, p.state, p.notice], "show_progress": "hidden",
               "concurrency_id": "answer", **private}
    # after every change to the conversation, the browser's copy is refreshed
    save_io = {"fn": h.save, "inputs": [p.state, p.script], "outputs": p.saved,
               "queue": False, "show_progress": "hidden", **private}
    p.question.submit(h.respond, [p.question, p.chatbot, p.state, p.script],
                      **chat_io).then(**save_io)
    p.send.click(h.respond, [p.question, p.chatbot, p.state, p.script],
                 **chat_io).then(**save_io)
    for btn in p.examples:
        btn.click(h.respond, [btn, p.chatbot, p.state, p.script], **chat_io).then(**save_io)
    p.chatbot.retry(h.regenerate, [p.chatbot, p.state, p.script], **chat_io).then(**save_io)

    reset_io = {"outputs": [p.chatbot, p.state, p.question, p.fb_row, p.pending, p.comment],
                "queue": False, **private}
    p.new_chat.click(h.new_conversation, None, **reset_io).then(**save_io)
    p.chatbot.clear(h.new_conversation, None, **reset_io).then(**save_io)

    p.script.change(h.switch_script, [p.script, p.chatbot, p.state, p.search],
                    [p.outline, p.chatbot, p.state, *p.examples], queue=False,
                    **private).then(**save_io)
    p.search.change(h.search_outline, [p.search, p.script], p.outline, queue=False,
                    trigger_mode="always_last", **private)

    p.chatbot.like(h.on_like, [p.state], [p.fb_row, p.pending, p.comment, p.notice],
                   queue=False, **private)
    comment_io = {"outputs": [p.fb_row, p.pending, p.comment, p.notice], "queue": False,
                  **private}
    p.fb_send.click(h.on_comment, [p.comment, p.pending, p.state], **comment_io)
    p.comment.submit(h.on_comment, [p.comment, p.pending, p.state], **comment_io)


def build_blocks(service: ChatService) -> gr.Blocks:
    """The chat page over `service`: layout, events, and the public api_name="ask"."""
    h = Handlers(service)
    with gr.Blocks(title=f"{h.plan.profile.short_title}问答", analytics_enabled=False) as demo:
        page = _layout(h)
        _wire(page, h)
        demo.load(h.notice_update, None, page.notice, api_visibility="private", queue=False)
        demo.load(h.restore, page.saved, [page.chatbot, page.state, page.script],
                  api_visibility="private", queue=False)
        gr.api(h.api_ask, api_name="ask", concurrency_id="answer")
    # A chat answer holds its slot through the paced reveal (~0.5 s of sleeping); the CPU
    # work is bounded by the service's workers and its one model thread anyway. So the
    # queue gets as many slots as there are workers (it had 4: 20 staff waited in line).
    demo.queue(default_concurrency_limit=ANSWER_WORKERS)
    return demo


__all__ = ["STATIC_PREFIX", "add_static_routes", "build_blocks", "css", "head", "theme"]
