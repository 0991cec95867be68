// The chat page's own behaviour, where Gradio has no hook for it (planqa.web.ui loads
// this file, same-origin, from <head>; it uses no inline code and no eval):
//  - 复制 on each answer: its text with its 出处 (the message carries it, .pq-data-copy);
//  - 导出: the conversation as Markdown, joined from each answer's .pq-data-md;
//  - 在目录中打开 on a source card: opens and shows that clause in the outline;
//  - Chinese accessible names for the chat's messages (Gradio names them in English,
//    with the message's raw HTML).
(() => {
  "use strict";

  /** A polite live region, so a screen reader hears "已复制" and the like. */
  function announce(text) {
    let live = document.getElementById("pq-live");
    if (!live) {
      live = document.createElement("div");
      live.id = "pq-live";
      live.className = "pq-visually-hidden";
      live.setAttribute("role", "status");
      live.setAttribute("aria-live", "polite");
      document.body.appendChild(live);
    }
    live.textContent = "";
    window.setTimeout(() => { live.textContent = text; }, 50);
  }

  /** Clipboard API where the page is a secure context; the old way elsewhere (http on
   *  an intranet host), so 复制 works on both. */
  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch (_) { /* fall through */ }
    }
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try { ok = document.execCommand("copy"); } catch (_) { ok = false; }
    area.remove();
    return ok;
  }

  async function onCopy(button) {
    const message = button.closest(".message-content") || button.parentElement.parentElement;
    const data = message && message.querySelector(".pq-data-copy");
    if (!data) return;
    const ok = await copyText(data.textContent);
    const label = button.firstChild; // the text before the hidden "（含出处）"
    label.textContent = ok ? "已复制" : "复制失败";
    announce(ok ? "已复制回答及出处" : "复制失败，请手动选择文字复制");
    window.setTimeout(() => { label.textContent = "复制回答"; }, 2000);
  }

  function stamp(d) {
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}`;
  }

  function onExport() {
    const answers = [...document.querySelectorAll("#pq-chat .pq-data-md")];
    if (!answers.length) {
      announce("还没有可以导出的对话");
      return;
    }
    const now = new Date();
    const md = `# ${document.title}\n\n导出时间：${now.toLocaleString("zh-CN")}\n\n`
      + answers.map((a) => a.textContent).join("\n");
    const url = URL.createObjectURL(new Blob([md], { type: "text/markdown;charset=utf-8" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = `${document.title}-对话-${stamp(now)}.md`;
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10000);
    announce(`已导出 ${answers.length} 个回答`);
  }

  function findClause(ref) {
    return document.querySelector(`#pq-outline .pq-ol-clause[data-ref="${CSS.escape(ref)}"]`);
  }

  function waitFor(probe, ms) {
    return new Promise((resolve) => {
      const end = Date.now() + ms;
      const tick = () => {
        const found = probe();
        if (found || Date.now() > end) resolve(found);
        else window.setTimeout(tick, 100);
      };
      tick();
    });
  }

  /** Open the clause `ref` in the outline: its section and itself, scrolled to and
   *  focused. A search that hides it is cleared first. */
  async function openClause(ref) {
    let item = findClause(ref);
    if (!item) {
      const box = document.querySelector("#pq-search textarea, #pq-search input");
      if (box && box.value) {
        box.value = "";
        box.dispatchEvent(new Event("input", { bubbles: true }));
        item = await waitFor(() => findClause(ref), 4000);
      }
    }
    if (!item) {
      announce(`目录中没有找到${ref}`);
      return;
    }
    const section = item.closest(".pq-ol-section");
    if (section) section.open = true;
    item.open = true;
    document.querySelectorAll(".pq-ol-target").forEach((e) => e.classList.remove("pq-ol-target"));
    item.classList.add("pq-ol-target");
    const summary = item.querySelector("summary");
    item.scrollIntoView({ block: "center" });
    if (summary) summary.focus({ preventScroll: true });
    announce(`已在目录中打开${ref}`);
  }

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const copy = target.closest(".pq-copy");
    if (copy) { event.preventDefault(); onCopy(copy); return; }
    const goto = target.closest(".pq-goto");
    if (goto) {
      event.preventDefault();
      const ref = goto.closest(".pq-card")?.querySelector(".pq-ref")?.textContent || "";
      if (ref) openClause(ref.trim());
      return;
    }
    if (target.closest("#pq-export")) onExport();
  });

  /** Gradio labels each message "bot's message: <its HTML>"; give it a short Chinese
   *  name instead (set again whenever the chat re-renders). */
  function nameMessages() {
    document.querySelectorAll('#pq-chat [data-testid="bot"], #pq-chat [data-testid="user"]')
      .forEach((m) => {
        const who = m.dataset.testid === "bot" ? "回答" : "问题";
        const text = (m.querySelector(".pq-text") || m).textContent.trim().replace(/\s+/g, " ");
        const name = `${who}：${text.slice(0, 60)}${text.length > 60 ? "…" : ""}`;
        if (m.getAttribute("aria-label") !== name) m.setAttribute("aria-label", name);
      });
    // Gradio's own controls that appear later (the chat's scroll button) are English.
    document.querySelectorAll("button[aria-label]").forEach((b) => {
      const zh = GRADIO_NAMES[b.getAttribute("aria-label")];
      if (zh) b.setAttribute("aria-label", zh);
    });
  }

  const GRADIO_NAMES = { "Scroll down": "滚动到最新", "Retry": "重试", "Undo": "撤销",
                         "Clear": "清空", "Copy message": "复制", "Copied message": "已复制" };

  let pending = false;
  new MutationObserver(() => {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(() => { pending = false; nameMessages(); });
  }).observe(document.documentElement, { subtree: true, childList: true,
                                         attributes: true, attributeFilter: ["aria-label"] });
})();
