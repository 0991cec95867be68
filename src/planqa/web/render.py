"""HTML for the chat: answers, source cards, notices, the plan's outline.

Pure functions of their arguments. Chat messages are Markdown with inline HTML, and one
HTML block without blank lines passes through untouched: every text is escaped here and
its newlines become <br>.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from planqa.text import clean_input, to_simplified
from planqa.web.convert import convert_script

if TYPE_CHECKING:
    from planqa.corpus import Passage, Plan


def esc(text: str) -> str:
    """`text` escaped for HTML, newlines as <br> (so a message stays one HTML block)."""
    return html.escape(text or "", quote=True).replace("\r", "").replace("\n", "<br>")


def attr(text: str) -> str:
    """`text` escaped with its newlines kept as &#10; (an element's textContent gets them
    back), so the message stays one HTML block for the Markdown renderer, which a blank
    line would end."""
    return (html.escape(text or "", quote=True).replace("\r", "")
            .replace("\n", "&#10;"))


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
        out.append(esc(text[pos:a]))
        out.append(f"<mark>{esc(text[a:b])}</mark>")
        pos = b
    out.append(esc(text[pos:]))
    return "".join(out)


def render_card(cite: dict[str, Any], kind: str = "source") -> str:
    """One collapsible source card: ref, section title › clause heading, full text, and a
    button that opens the clause in the outline (static/planqa.js handles it)."""
    ref = esc(cite.get("ref", ""))
    title = esc(cite.get("title", ""))
    body = highlight(cite.get("text") or cite.get("quote", ""), cite.get("highlights") or ())
    # the chat's sanitizer drops data-* and aria-* attributes: the script reads the ref
    # from .pq-ref, and the button's name is its text
    goto = ('<button type="button" class="pq-goto">在目录中打开'
            f'<span class="pq-visually-hidden">{ref}</span></button>') if ref else ""
    return (
        f'<details class="pq-card pq-card-{kind}" data-ref="{ref}">'
        f'<summary><span class="pq-ref">{ref}</span><span class="pq-title">{title}</span>'
        f"</summary>"
        f'<div class="pq-clause-text">{body}</div>{goto}</details>'
    )


def _cites(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's sources: its citations, or for a refusal the related clauses."""
    return list((answer.get("citations") if answer.get("found") else answer.get("related"))
                or [])


def _see_also(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The clauses a found answer shows beside its source ("另见")."""
    return list(answer.get("related") or []) if answer.get("found") else []


def answer_plain_text(answer: dict[str, Any]) -> str:
    """What 复制 puts on the clipboard: the answer's text with its 出处. The text names its
    source already for a quote; otherwise the cited refs are added on a line of their own."""
    text = (answer.get("answer") or "").strip()
    refs = [str(c.get("ref", "")) for c in _cites(answer) if c.get("ref")]
    if refs and "出处" not in text and "出處" not in text:
        label = "出处" if answer.get("found") else "可能相关的条款"
        text += f"\n（{label}：{'；'.join(refs)}）"
    return text


def answer_markdown(question: str, answer: dict[str, Any]) -> str:
    """One turn of an exported conversation as Markdown: the question, the answer, and each
    source with its ref, title and quoted sentences."""
    def quoted(s: str) -> str:
        return "\n".join(f"> {line}" if line else ">" for line in s.splitlines())

    parts = [f"## 问：{' '.join((question or '').split())}", "",
             (answer.get("answer") or "").strip()]
    groups = (("**出处**" if answer.get("found") else "**可能相关的条款**", _cites(answer)),
              ("**另见**", _see_also(answer)))
    for label, cites in groups:
        if not cites:
            continue
        parts += ["", label, ""]
        for c in cites:
            parts.append(f"- **{c.get('ref', '')}** {c.get('title', '')}")
            quote = (c.get("quote") or "").strip()
            if quote:
                parts += ["", quoted(quote), ""]
    return "\n".join(parts).rstrip() + "\n"


def render_answer(answer: dict[str, Any], shown: str | None = None, asked: str = "") -> str:
    """A chat message for an answer. `shown` is the part revealed so far while streaming;
    cards, the 复制 button and the Markdown for 导出 come only with the complete answer.
    `asked` is the question as typed (default: as the library understood it)."""
    found = bool(answer.get("found"))
    streaming = shown is not None
    text = answer.get("answer", "") if shown is None else shown
    classes = "pq-answer " + ("pq-found" if found else "pq-notfound")
    if streaming:
        classes += " pq-streaming"
    label = "" if found else '<span class="pq-badge">方案未涉及</span>'
    parts = [f'<div class="{classes}">{label}<div class="pq-text">{esc(text)}</div></div>']
    if not streaming:
        groups = (("source", "出处（点开查看条款全文）", _cites(answer)) if found
                  else ("related", "可能相关的条款", _cites(answer)),
                  ("related", "另见", _see_also(answer)))
        for kind, heading, cites in groups:
            if cites:
                cards = "".join(render_card(c, kind) for c in cites)
                parts.append(f'<div class="pq-sources pq-sources-{kind}">'
                             f'<div class="pq-sources-label">{heading}</div>{cards}</div>')
        # What 复制 and 导出 (static/planqa.js) take, kept with the message in elements
        # that are never shown (the chat's sanitizer drops data-* attributes).
        md = answer_markdown(asked or str(answer.get("question") or ""), answer)
        parts.append(f'<div class="pq-data pq-data-copy">{attr(answer_plain_text(answer))}</div>'
                     f'<div class="pq-data pq-data-md">{attr(md)}</div>'
                     '<div class="pq-actions"><button type="button" class="pq-copy">'
                     '复制回答<span class="pq-visually-hidden">（含出处）</span></button></div>')
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
            return esc(s)
        spans = []
        simp = to_simplified(s)
        if len(simp) != len(s):  # a phrase conversion moved offsets: show it unmarked
            return esc(s)
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
                f'<details class="pq-ol-clause" data-ref="{esc(p.ref)}">'
                f'<summary><span class="pq-ol-num">{esc(marker)}</span>{mark(heading)}</summary>'
                f'<div class="pq-ol-text"><div class="pq-ol-ref">{esc(p.ref)}</div>'
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


__all__ = ["answer_markdown", "answer_plain_text", "attr", "esc",
           "highlight", "render_answer", "render_card", "render_notice", "render_outline"]
