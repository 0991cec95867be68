"""The staff's view in a real browser: Debian's chromium driven by Playwright.

Runs against `python app.py` (web_fixtures.web_server) with the real PlanQA. Every
request the page makes is recorded and must go to the server's own origin.
Screenshots land in test-artifacts/ at the repo root, with axe-core's results for the
light and dark themes (axe-<theme>.json).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pytest

if TYPE_CHECKING:
    from web_fixtures import LiveServer

# the module-scoped `web_server` fixture (python app.py on a free port)
pytest_plugins = ["web_fixtures"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 30_000
Q_STAFF = "事业编制要精简到多少名？"
Q_REFUSE = "科协现任主席是谁？"
CJK = re.compile(r"[\u4e00-\u9fff]")

# The roles of controls in Playwright's ARIA snapshot (its accessible-name computation):
# a line reads `- button "发送"`, or without the quoted name when there is none.
CONTROL_LINE = re.compile(r'^\s*- (button|textbox|searchbox|radio|checkbox|combobox|link|'
                          r'slider|spinbutton|switch|tab|menuitem)\b(?: "((?:[^"\\]|\\.)*)")?')


def control_names(page) -> list[tuple[str, str]]:
    """(role, accessible name) of every control the page shows."""
    found = []
    for line in page.locator("body").aria_snapshot().splitlines():
        m = CONTROL_LINE.match(line)
        if m:
            found.append((m.group(1), m.group(2) or ""))
    return found


# Counts, per message, how long the streaming text was each time the page changed:
# proof that the answer arrived in pieces, not all at once.
STREAM_PROBE = """
window.__pqLengths = [];
new MutationObserver(() => {
  const t = document.querySelector('.pq-streaming .pq-text');
  if (t) window.__pqLengths.push(t.textContent.length);
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    # Imported here, not skipped: a missing playwright or chromium must fail the run.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        yield b
        b.close()


class Session:
    """One browser context (one staff member) with every request it made recorded."""

    def __init__(self, browser, server: LiveServer, viewport: dict[str, int],
                 **options) -> None:
        self.server = server
        self.context = browser.new_context(viewport=viewport, locale="zh-CN", **options)
        self.requests: list[str] = []
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(server.url)
        self.page.wait_for_selector("#pq-question textarea")
        self.page.wait_for_selector(".pq-outline")

    def ask(self, question: str) -> None:
        """Type a question, send it, wait for the complete answer (its cards or label)."""
        before = self.answers_done()
        box = self.page.locator("#pq-question textarea")
        box.fill(question)
        box.press("Enter")
        self.wait_answers(before + 1)

    def reload(self) -> None:
        self.page.reload()
        self.page.wait_for_selector("#pq-question textarea")
        self.page.wait_for_selector(".pq-outline")

    def answers_done(self) -> int:
        return self.page.locator(".pq-answer:not(.pq-streaming)").count()

    def wait_answers(self, n: int) -> None:
        self.page.wait_for_function(
            "n => document.querySelectorAll('.pq-answer:not(.pq-streaming)').length >= n",
            arg=n)

    def last_answer(self):
        return self.page.locator(".pq-answer:not(.pq-streaming)").last

    def foreign_requests(self) -> list[str]:
        own = urlparse(self.server.url).netloc
        return [u for u in self.requests
                if not u.startswith(("data:", "blob:")) and urlparse(u).netloc != own]

    def close(self) -> None:
        self.context.close()


def _log_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]


def _wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def test_desktop_chat_cards_outline_feedback_and_script(browser, web_server: LiveServer
                                                        ) -> None:
    s = Session(browser, web_server, DESKTOP)
    page = s.page
    try:
        assert page.title() == "科协改革方案问答"
        page.evaluate(STREAM_PROBE)

        # a question: the answer streams in, then its source card follows
        s.ask("事业编制要精简到多少名？")
        answer = s.last_answer()
        assert "1120" in answer.inner_text()
        lengths = [n for n in page.evaluate("window.__pqLengths") if n > 0]
        final = len(answer.locator(".pq-text").inner_text())
        assert len(set(lengths)) >= 2 and min(lengths) < final, lengths

        card = page.locator(".pq-card").first
        assert "二、2" in card.locator("summary").inner_text()
        assert "›" in card.locator("summary").inner_text()
        clause = card.locator(".pq-clause-text")
        assert not clause.is_visible()  # cards start collapsed
        card.locator("summary").click()
        assert clause.is_visible()
        assert "1120" in clause.locator("mark").first.inner_text()
        assert len(clause.inner_text()) > len(clause.locator("mark").first.inner_text())

        # the outline: choosing a clause shows its full text
        item = page.locator('.pq-ol-clause[data-ref="二、2"]')
        item.locator("summary").click()
        text = item.locator(".pq-ol-text")
        assert text.is_visible() and "1120" in text.inner_text()

        # the search box filters the outline
        search = page.locator("#pq-search textarea, #pq-search input").first
        search.fill("科普")
        page.wait_for_selector(".pq-ol-count")
        assert page.locator('.pq-ol-clause[data-ref="四、3"]').count() == 1
        assert page.locator('.pq-ol-clause[data-ref="二、2"]').count() == 0
        search.fill("")
        page.wait_for_selector('.pq-ol-clause[data-ref="二、2"]')

        # a follow-up that only makes sense with the conversation's history
        s.ask("那所属事业单位呢？")
        follow = s.last_answer().inner_text()
        assert "13" in follow
        assert page.locator(".pq-answer:not(.pq-streaming)").count() == 2

        # feedback on the first answer: thumb up, then an optional comment
        before = len(_log_lines(web_server.feedback_log))
        first_bot = page.locator(".message-row.bot-row, .bot-row").first
        first_bot.hover()
        page.locator('button[aria-label="赞"]').first.click()
        page.wait_for_selector("#pq-feedback", state="visible")
        page.locator("#pq-comment textarea").fill("引用很准确")
        page.locator("#pq-fb-send").click()
        lines = _wait_for(lambda: (x := _log_lines(web_server.feedback_log))[before:]
                          and len(x) >= before + 2 and x)
        new = lines[before:]
        assert [x["vote"] for x in new] == ["useful", "useful"]
        assert new[-1]["comment"] == "引用很准确"
        assert new[-1]["question"] == "事业编制要精简到多少名？"
        assert new[-1]["citations"][0]["ref"] == "二、2"
        assert new[0]["id"] == new[1]["id"]

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-desktop-1280x900.png"))
        page.screenshot(path=str(ARTIFACTS / "web-desktop-full.png"), full_page=True)

        # Traditional: outline, answers and cards all switch
        page.locator("#pq-script label", has_text="繁體").click()
        page.wait_for_function(
            "() => document.querySelector('.pq-outline').textContent.includes('總體要求')")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.pq-answer .pq-text')]"
            ".some(e => e.textContent.includes('編制'))")
        assert "事業編制" in page.locator(".pq-clause-text").first.text_content()
        s.ask("學會聯合體是做什麼的？")
        assert "學會" in s.last_answer().inner_text()
        page.mouse.move(0, 0)  # no hover styles in the screenshot
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "web-desktop-traditional.png"), full_page=True)

        assert s.foreign_requests() == []
        assert any(u.startswith(web_server.url) for u in s.requests)
    finally:
        s.close()


def test_phone_width_refusal_looks_different(browser, web_server: LiveServer) -> None:
    s = Session(browser, web_server, PHONE)
    page = s.page
    try:
        s.ask("科协现任主席是谁？")
        refusal = s.last_answer()
        assert "pq-notfound" in refusal.get_attribute("class")
        assert "方案未涉及" in refusal.inner_text()
        found_bg = page.evaluate("() => getComputedStyle(document.querySelector("
                                 "'.pq-notfound')).backgroundColor")
        assert found_bg not in ("rgba(0, 0, 0, 0)", "transparent")
        ARTIFACTS.mkdir(exist_ok=True)
        refusal.evaluate("e => e.scrollIntoView({block: 'start'})")  # show its label
        page.screenshot(path=str(ARTIFACTS / "web-phone-refusal.png"))
        # a refusal offers the nearest clauses (可能相关), collapsed until chosen
        related = page.locator(".pq-card-related")  # the only answer so far is the refusal
        assert related.count() >= 1
        assert not related.first.locator(".pq-clause-text").is_visible()
        related.first.locator("summary").click()
        assert related.first.locator(".pq-clause-text").is_visible()
        s.ask("事业编制要精简到多少名？")
        assert "pq-found" in s.last_answer().get_attribute("class")
        # nothing wider than the phone: no sideways scrolling
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1, width
        page.screenshot(path=str(ARTIFACTS / "web-phone-390x844.png"))
        page.screenshot(path=str(ARTIFACTS / "web-phone-full.png"), full_page=True)

        # 5,000 unbroken characters wrap: the page stays as wide as the phone, the
        # answer is not cut off, and 新对话 can still be clicked
        s.ask("x" * 5000)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1, width
        user = page.locator('#pq-chat [data-testid="user"]').last
        ubox, last = user.bounding_box(), s.last_answer().bounding_box()
        assert ubox and last and ubox["x"] >= 0 and ubox["x"] + ubox["width"] <= PHONE["width"]
        assert last["x"] >= 0 and last["x"] + last["width"] <= PHONE["width"]
        user.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(ARTIFACTS / "web-phone-long-text.png"))
        page.locator("#pq-new").click()  # Playwright checks nothing else takes the click
        page.wait_for_function("() => document.querySelectorAll('.pq-answer').length === 0")
        assert s.foreign_requests() == []
    finally:
        s.close()


def test_two_staff_at_once_see_only_their_own_turns(browser, web_server: LiveServer) -> None:
    a = Session(browser, web_server, DESKTOP)
    b = Session(browser, web_server, DESKTOP)
    try:
        # both send at (nearly) the same moment; b uses an example question
        a.page.locator("#pq-question textarea").fill("事业编制要精简到多少名？")
        a.page.locator("#pq-question textarea").press("Enter")
        b.page.locator(".pq-example", has_text="学会治理结构改革有哪些要求？").click()
        a.wait_answers(1)
        b.wait_answers(1)
        text_a = a.page.locator("#pq-chat").inner_text()
        text_b = b.page.locator("#pq-chat").inner_text()
        assert "事业编制要精简到多少名" in text_a and "学会治理结构" not in text_a
        assert "学会治理结构改革有哪些要求" in text_b and "事业编制要精简" not in text_b
        # a new conversation empties only one's own chat
        b.page.locator("#pq-new").click()
        b.page.wait_for_function(
            "() => document.querySelectorAll('.pq-answer').length === 0")
        assert a.page.locator(".pq-answer").count() == 1
        assert a.foreign_requests() == [] and b.foreign_requests() == []
    finally:
        a.close()
        b.close()


def test_copy_goto_regenerate_export_and_reload(browser, web_server: LiveServer,
                                                tmp_path: Path) -> None:
    s = Session(browser, web_server, DESKTOP,
                permissions=["clipboard-read", "clipboard-write"])
    page = s.page
    try:
        s.ask(Q_REFUSE)
        s.ask(Q_STAFF)
        answer = s.last_answer()

        # 复制: the answer's text with its 出处 goes to the clipboard
        page.locator(".pq-copy").last.click()
        page.wait_for_function("() => [...document.querySelectorAll('.pq-copy')]"
                               ".some(b => b.textContent.startsWith('已复制'))")
        copied = page.evaluate("() => navigator.clipboard.readText()")
        assert copied == answer.locator(".pq-text").inner_text().strip()
        assert "1120" in copied and "出处" in copied and "<" not in copied
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-copied.png"))

        # a citation opens its clause in the outline, even when a search hides it
        search = page.locator("#pq-search textarea, #pq-search input").first
        search.fill("科普")
        page.wait_for_selector(".pq-ol-count")
        assert page.locator('.pq-ol-clause[data-ref="二、2"]').count() == 0
        card = page.locator(".pq-card-source",
                            has=page.locator(".pq-ref", has_text="二、2")).last
        card.locator("summary").click()
        card.locator(".pq-goto").click()
        clause = page.locator('.pq-ol-clause[data-ref="二、2"]')
        clause.locator(".pq-ol-text").wait_for(state="visible")
        assert "pq-ol-target" in clause.get_attribute("class")
        assert search.input_value() == ""
        assert page.evaluate("() => document.activeElement.closest('.pq-ol-clause')"
                             "?.dataset.ref") == "二、2"
        box = clause.bounding_box()
        outline = page.locator("#pq-outline").bounding_box()
        assert box and outline and outline["y"] <= box["y"] <= outline["y"] + outline["height"]

        # 重试 asks the last question again: the answer streams in anew, replacing the old
        page.evaluate(STREAM_PROBE)
        page.locator(".bot-row").last.hover()
        page.locator('button[aria-label="重试"]').last.click()
        page.wait_for_function("() => window.__pqLengths.length > 0")
        s.wait_answers(2)
        page.wait_for_function("() => !document.querySelector('.pq-streaming')")
        assert page.locator(".pq-answer").count() == 2
        assert "1120" in s.last_answer().inner_text()

        # the conversation survives a reload, as context for a follow-up
        s.reload()
        s.wait_answers(2)
        assert Q_STAFF in page.locator("#pq-chat").inner_text()
        s.ask("那所属事业单位呢？")
        assert "13" in s.last_answer().inner_text()

        # 导出: Markdown with each question, answer and its refs
        with page.expect_download() as info:
            page.locator("#pq-export").click()
        download = info.value
        assert download.suggested_filename.endswith(".md")
        md_path = tmp_path / "conversation.md"
        download.save_as(md_path)
        md = md_path.read_text("utf-8")
        assert md.startswith("# 科协改革方案问答\n")
        assert [m.group(1) for m in re.finditer(r"^## 问：(.+)$", md, re.M)] == [
            Q_REFUSE, Q_STAFF, "那所属事业单位呢？"]
        assert "**可能相关的条款**" in md and "- **二、2**" in md and "> " in md
        assert "1120" in md and "<" not in md
        (ARTIFACTS / "exported-conversation.md").write_text(md, "utf-8")
        shown = s.context.new_page()  # the exported file as staff would read it
        shown.set_content(f'<pre style="white-space: pre-wrap; font: 14px sans-serif">'
                          f"{html.escape(md)}</pre>")
        shown.screenshot(path=str(ARTIFACTS / "web-exported-markdown.png"), full_page=True)
        shown.close()
        page.mouse.move(0, 0)
        page.screenshot(path=str(ARTIFACTS / "web-after-reload-export.png"), full_page=True)

        # another staff member's browser starts empty
        other = Session(browser, web_server, DESKTOP)
        try:
            other.page.wait_for_timeout(1000)
            assert other.page.locator(".pq-answer").count() == 0
        finally:
            other.close()
        # 新对话 empties the kept copy too
        page.locator("#pq-new").click()
        page.wait_for_function("() => document.querySelectorAll('.pq-answer').length === 0")
        page.wait_for_timeout(500)
        s.reload()
        page.wait_for_timeout(1500)
        assert page.locator(".pq-answer").count() == 0
        assert s.foreign_requests() == []
    finally:
        s.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_and_names_are_chinese(browser, web_server: LiveServer,
                                                              scheme: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    s = Session(browser, web_server, DESKTOP, color_scheme=scheme)
    page = s.page
    try:
        is_dark = page.evaluate("() => !!document.querySelector('.dark')")
        assert is_dark == (scheme == "dark")
        s.ask(Q_REFUSE)
        s.ask(Q_STAFF)
        page.locator(".pq-card-source summary").last.click()  # marks inside, the goto button
        page.locator(".pq-card-related summary").first.click()
        page.locator('.pq-ol-clause[data-ref="二、2"] summary').click()
        page.mouse.move(0, 0)
        page.wait_for_timeout(300)
        results = Axe().run(page).response
        found = [{"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]),
                  "targets": [n["target"] for n in v["nodes"][:5]]}
                 for v in results["violations"]]
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"axe-{scheme}.json").write_text(
            json.dumps({"axe": results["testEngine"]["version"], "violations": found},
                       ensure_ascii=False, indent=1), "utf-8")
        bad = [v for v in found if v["impact"] in ("serious", "critical")]
        assert bad == [], bad

        controls = control_names(page)
        roles = {r for r, _ in controls}
        assert len(controls) > 15 and {"button", "textbox", "radio"} <= roles, controls
        unnamed = [c for c in controls if not CJK.search(c[1])]
        assert unnamed == [], unnamed
        # the messages themselves: Gradio's "bot's message: <html>" is replaced
        labels = page.evaluate(
            "() => [...document.querySelectorAll('#pq-chat [data-testid=bot],"
            " #pq-chat [data-testid=user]')].map(e => e.getAttribute('aria-label') || '')")
        assert len(labels) == 4, labels
        assert all(x.startswith(("问题：", "回答：")) for x in labels), labels
        page.screenshot(path=str(ARTIFACTS / f"web-{scheme}.png"), full_page=True)
        assert s.foreign_requests() == []
    finally:
        s.close()
