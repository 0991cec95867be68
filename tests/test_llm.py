"""The optional LLM answerer: its prompt, its checks, and its fallbacks.

The integration tests run the real chain (real model and index) against a small
OpenAI-compatible server on 127.0.0.1, so the real ChatOpenAI client, its timeout
and its error handling are exercised; each test sets how the server behaves."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables import RunnableLambda

from planqa.answering import Answer, make_citation
from planqa.chain import PlanQA
from planqa.corpus import load_plan
from planqa.llm import (
    MAX_REPLY_CHARS,
    NOT_COVERED,
    LLMAnswerer,
    build_prompt,
    cited_refs,
    figures,
    prompt_inputs,
    verify,
)
from planqa.retrieval import Hit
from planqa.text import clean_input

QUESTION = "事业编制要精简到多少名？"
QUESTION_TRAD = "事業編制要精簡到多少名？"
FAITHFUL = "根据方案，中国科协事业编制要在2016年年底前精简至1120名左右[二、2]。"
FALLBACK_SUFFIX = "using the extractive answer"


# ---------------------------------------------------------------- the fake endpoint


@dataclass
class FakeLLM:
    """What the fake endpoint does next, and what it was sent."""

    kind: str = "reply"  # reply | slow | error | badjson
    content: str = FAITHFUL
    delay: float = 0.0
    requests: list[dict] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def set(self, kind: str = "reply", content: str = FAITHFUL, delay: float = 0.0) -> None:
        self.kind, self.content, self.delay = kind, content, delay

    @property
    def last_prompt(self) -> dict[str, str]:
        """The last request's messages by role."""
        assert self.requests, "the LLM endpoint was not called"
        return {m["role"]: m["content"] for m in self.requests[-1]["body"]["messages"]}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        state.requests.append({"path": self.path, "body": body,
                               "authorization": self.headers.get("Authorization")})
        try:
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found", "type": "invalid_request"}})
            elif state.kind == "error":
                self._send(500, {"error": {"message": "boom", "type": "server_error"}})
            elif state.kind == "badjson":
                self._send(200, b'{"id": "chatcmpl-1", "choices": [ this is not json')
            else:
                if state.kind == "slow":
                    # Wait, but let the test's teardown end the wait early.
                    state.release.wait(state.delay)
                self._send(200, _completion(state.content, body))
        except OSError:
            pass  # the client gave up (the timeout test): nothing to answer

    def _send(self, status: int, payload: dict | bytes) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeLLM


def _completion(content: str, request: dict | None) -> dict:
    """A standard OpenAI chat.completion response."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": (request or {}).get("model", "fake"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


@pytest.fixture(scope="module")
def llm_server() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)  # port 0: any free port
    server.state = FakeLLM()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def fake(llm_server, monkeypatch) -> Iterator[FakeLLM]:
    # Loopback only, even where a proxy is configured.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    state = FakeLLM()
    llm_server.state = state
    yield state
    state.release.set()  # end a slow handler's wait


@pytest.fixture
def llm_qa(fake, llm_server, settings, searcher) -> PlanQA:
    """The real chain with the LLM configured the way a deployment does it."""
    port = llm_server.server_address[1]
    configured = settings.replace(llm_base_url=f"http://127.0.0.1:{port}/v1",
                                  llm_model="fake", llm_api_key="", llm_timeout=1.0)
    return PlanQA(configured, searcher=searcher)


def _fallback_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "planqa" and r.levelno == logging.WARNING]


# ---------------------------------------------------------------- the real chain


def test_from_settings_builds_an_openai_client(llm_qa):
    llm = llm_qa.llm
    assert isinstance(llm, LLMAnswerer)
    model = llm.model
    assert type(model).__name__ == "ChatOpenAI"
    assert model.model_name == "fake"
    assert model.request_timeout == 1.0
    assert model.max_retries == 0
    assert model.temperature == 0
    assert model.openai_api_base == llm_qa.settings.llm_base_url


def test_faithful_reply_is_used(llm_qa, qa, fake):
    extractive = qa.ask(QUESTION)
    a = llm_qa.ask(QUESTION)
    assert a.source == "llm" and a.found
    lines = a.text.split("\n")
    assert lines[0] == FAITHFUL
    assert lines[-1].startswith("（出处：第二部分“改革联系服务科技工作者的体制机制”第2条")
    assert lines[-1] == extractive.text.split("\n")[-1]
    # The extractive citation (with its verbatim quote) stays, first.
    assert a.citations[0] == extractive.citations[0]
    assert a.citations[0].ref == "二、2"
    assert a.question == extractive.question
    # One call, to the standard path, with the settings' model and no sampling.
    assert len(fake.requests) == 1
    request = fake.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "fake"
    assert request["body"]["temperature"] == 0
    assert request["authorization"] == "Bearer none"


def test_prompt_has_the_refs_clauses_and_question(llm_qa, searcher, fake):
    llm_qa.ask(QUESTION)
    prompt = fake.last_prompt
    system, human = prompt["system"], prompt["user"]
    for rule in ("只依据", "[二、2]", "方案未涉及", "繁体中文", "简体中文", "完全一致"):
        assert rule in system
    assert "本题请用简体中文作答" in system
    top = [h.passage.ref for h in searcher.search(QUESTION, k=5)]
    assert top[0] == "二、2"
    for ref in top[:3]:
        assert f"[{ref}] " in human
    for ref in top[3:]:  # only the top 3 are shown
        assert f"[{ref}] " not in human
    assert "[二、2] 改革联系服务科技工作者的体制机制 › 深化科协机关改革" in human
    assert "事业编制2016年年底前精简至1120名左右" in human
    assert f"问题：{clean_input(QUESTION)}" in human  # as the chain cleaned it (？ → ?)


def test_reply_citing_two_clauses_puts_them_first(llm_qa, searcher, qa, fake):
    second = searcher.search(QUESTION, k=3)[1]
    reply = f"方案要求事业编制2016年年底前精简至1120名左右[{second.passage.ref}][二、2]。"
    fake.set(content=reply)
    a = llm_qa.ask(QUESTION)
    assert a.source == "llm"
    assert [c.ref for c in a.citations] == [second.passage.ref, "二、2"]
    assert a.citations[1] == qa.ask(QUESTION).citations[0]
    assert a.citations[0] == make_citation(second.passage, [second.matched_position], False,
                                           second.score)


def test_made_up_figure_falls_back(llm_qa, qa, fake, caplog):
    fake.set(content="事业编制2016年年底前精简至1200名左右[二、2]。")
    with caplog.at_level(logging.WARNING, logger="planqa"):
        a = llm_qa.ask(QUESTION)
    assert a == qa.ask(QUESTION)
    assert a.source == "extractive"
    [line] = _fallback_logged(caplog)
    assert line == ("LLM answer rejected (number 1200 not in cited clauses); "
                    "using the extractive answer")


@pytest.mark.parametrize("ref", ["五、4", "五、3"])  # 五、3 is retrieved, but 4th: not shown
def test_ref_not_retrieved_falls_back(llm_qa, qa, fake, caplog, ref):
    fake.set(content=f"事业编制2016年年底前精简至1120名左右[二、2][{ref}]。")
    with caplog.at_level(logging.WARNING, logger="planqa"):
        a = llm_qa.ask(QUESTION)
    assert a == qa.ask(QUESTION)
    [line] = _fallback_logged(caplog)
    assert f"ref {ref} not among the retrieved clauses" in line
    assert line.endswith(FALLBACK_SUFFIX)


def test_slow_llm_times_out_and_falls_back(llm_qa, qa, searcher, fake, caplog):
    sleep = 8.0  # the server's delay; the client's timeout is 1 s
    llm_qa.ask("科协系统深化改革的指导思想是什么？")  # warm up: load the client and jieba
    t0 = time.perf_counter()
    expected = qa.ask(QUESTION)
    baseline = time.perf_counter() - t0  # the same question without an LLM
    fake.set(kind="slow", delay=sleep)
    caplog.clear()  # the warm-up's reply was rejected (it cites 二、2): not this test's line
    with caplog.at_level(logging.WARNING, logger="planqa"):
        t0 = time.perf_counter()
        a = llm_qa.ask(QUESTION)
        elapsed = time.perf_counter() - t0
        # The LLM step alone, without retrieval's share of a busy CI machine.
        hits = searcher.search(QUESTION, k=5)
        t0 = time.perf_counter()
        direct = llm_qa.llm.answer(QUESTION, QUESTION, hits, expected)
        llm_elapsed = time.perf_counter() - t0
    assert a == expected and direct is expected
    assert llm_elapsed < 2.5, f"LLM step took {llm_elapsed:.1f} s with a 1 s timeout"
    assert elapsed < baseline + 3.0 < sleep, (
        f"took {elapsed:.1f} s (without LLM {baseline:.1f} s), server sleeps {sleep} s")
    lines = _fallback_logged(caplog)
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("LLM call failed (") and "Timeout" in line
        assert line.endswith(FALLBACK_SUFFIX)


def test_server_error_falls_back(llm_qa, qa, fake, caplog):
    fake.set(kind="error")
    with caplog.at_level(logging.WARNING, logger="planqa"):
        a = llm_qa.ask(QUESTION)
    assert a == qa.ask(QUESTION)
    [line] = _fallback_logged(caplog)
    assert line.startswith("LLM call failed (") and "500" in line
    assert line.endswith(FALLBACK_SUFFIX)
    assert len(fake.requests) == 1, "no retries"


def test_invalid_json_falls_back(llm_qa, qa, fake, caplog):
    fake.set(kind="badjson")
    with caplog.at_level(logging.WARNING, logger="planqa"):
        a = llm_qa.ask(QUESTION)
    assert a == qa.ask(QUESTION)
    [line] = _fallback_logged(caplog)
    assert line.startswith("LLM call failed (") and line.endswith(FALLBACK_SUFFIX)


def test_not_covered_reply_keeps_the_extractive_answer(llm_qa, qa, fake, caplog):
    fake.set(content=NOT_COVERED)
    with caplog.at_level(logging.WARNING, logger="planqa"):
        a = llm_qa.ask(QUESTION)
    assert a == qa.ask(QUESTION)
    [line] = _fallback_logged(caplog)
    assert NOT_COVERED in line and line.endswith(FALLBACK_SUFFIX)


def test_traditional_question_gets_a_traditional_prompt_and_answer(llm_qa, qa, fake):
    reply = "方案要求事業編制2016年年底前精簡至1120名左右【二、2】。"
    fake.set(content=reply)
    a = llm_qa.ask(QUESTION_TRAD)
    assert a.source == "llm" and a.traditional
    assert a.text.split("\n")[0] == reply
    assert a.text.split("\n")[-1].startswith("（出處：")
    assert a.citations[0] == qa.ask(QUESTION_TRAD).citations[0]
    system, human = fake.last_prompt["system"], fake.last_prompt["user"]
    assert "本题请用繁体中文作答" in system
    assert "事業編制2016年年底前精簡至1120名左右" in human  # the source's own Traditional
    assert f"问题：{clean_input(QUESTION_TRAD)}" in human


def test_refusal_does_not_call_the_llm(llm_qa, fake):
    a = llm_qa.ask("明天北京天气怎么样？")
    assert not a.found and a.source == "extractive"
    assert fake.requests == []


# ---------------------------------------------------------------- verify (pure)


@pytest.fixture(scope="module")
def plan_hits() -> list[Hit]:
    """二、2, 二、1 and 二、3 as if retrieved in that order (no model needed)."""
    plan = load_plan()
    return [Hit(plan.get(pid), 1.0 - i / 10, "", 0, 0.9, 0.5)
            for i, pid in enumerate(("二.2", "二.1", "二.3"))]


@pytest.mark.parametrize("reply", [
    FAITHFUL,
    "所属事业单位2016年年底前压缩至13个[二、2]。",
    "所屬事業單位2016年年底前壓縮至13個【二、2】。",
    "事业编制精简至1120名左右 [二.2]",
    "事业编制精简至1,120名左右[第二部分第2条]",
    "45岁以下青年科技工作者不少于三分之一[二、1]。",
    "一线比例由58%提高至65%左右[二、1]，事业编制精简至1120名[二、2]。",
    "任期一般不少于两年，机关留出10%-15%的局处级岗位[二、3]。",
    "任期一般不少于兩年，機關留出10%至15%的局處級崗位[二、3]。",
    "见第二部分第2条：事业编制精简至1120名左右。[二、2；二、1]",
    "1. 事业单位压缩至13个[二、2]\n2. 事业编制精简至1120名左右[二、2]",
])
def test_verify_accepts_faithful_replies(plan_hits, reply):
    assert verify(reply, plan_hits) == []


@pytest.mark.parametrize(("reply", "problem"), [
    ("", "empty reply"),
    ("   \n", "empty reply"),
    ("事业编制精简至1120名左右。", "no clause cited"),
    (NOT_COVERED, NOT_COVERED),
    ("方案未涉及。", NOT_COVERED),
    ("事业编制精简至1200名左右[二、2]。", "number 1200 not in cited clauses"),
    ("事业编制精简至1120.5名左右[二、2]。", "number 1120.5 not in cited clauses"),
    ("事业编制精简至1120名左右[五、4]。", "ref 五、4 not among the retrieved clauses"),
    ("事业编制精简至1120名左右[二、5]。", "ref 二、5 not among the retrieved clauses"),
    # A figure of a retrieved clause that the reply does not cite does not count.
    ("事业编制精简至1120名，青年不少于三分之一[二、2]。", "number 三分之一 not in cited clauses"),
    ("青年科技工作者不少于四分之一[二、1]。", "number 四分之一 not in cited clauses"),
    ("任期一般不少于三年[二、3]。", "number 三年 not in cited clauses"),
    ("一线比例提高至66%左右[二、1]。", "number 66% not in cited clauses"),
    ("一线比例提高至百分之六十六[二、1]。", "number 百分之六十六 not in cited clauses"),
    ("事业编制精简至58名[二、1]。", "number 58 not in cited clauses"),  # 58% is a share
    ("[三分之一]事业编制精简至1120名[二、2]。", "number 三分之一 not in cited clauses"),
    ("事" * (MAX_REPLY_CHARS + 1) + "[二、2]", "reply too long"),
])
def test_verify_rejects(plan_hits, reply, problem):
    problems = verify(reply, plan_hits)
    assert problems and any(problem in p for p in problems), problems


def test_verify_lists_every_problem(plan_hits):
    problems = verify("编制1200名，比例99%[二、2][四、1]", plan_hits)
    assert problems == ["ref 四、1 not among the retrieved clauses 二、2/二、1/二、3",
                        "number 1200 not in cited clauses", "number 99% not in cited clauses"]


def test_cited_refs():
    assert cited_refs("见[二、2；三、3]、【一、2】与[二.5][第三部分第3条][前言][二][二、2]") == [
        "二、2", "三、3", "一、2", "二、5", "前言", "二"]  # in order, each once
    assert cited_refs("二、2规定……") == []  # bare, outside brackets: not a citation
    assert cited_refs("[三分之一][2016年][注]") == []


def test_figures_ignore_refs_ordinals_and_list_markers():
    assert figures("第二部分第2条规定，二、2也这么说[二、2]。\n1. 一项\n（2）另一项") == []
    got = {w: fig for w, fig in figures("兩年、2年、1,120名、1120名、百分之五十八、58%、十八届")}
    assert got["兩年"] == got["2"] == (2, False)
    assert got["1,120"] == got["1120"] == (1120, False)
    assert got["百分之五十八"] == got["58%"] == (58, True)
    assert got["十八届"] == (18, False)
    assert figures("建立一个平台、一名书记") == []  # a lone 一 is an article


# ---------------------------------------------------------------- prompt and answerer (pure)


def test_prompt_inputs_for_a_follow_up(plan_hits):
    inputs = prompt_inputs("那事业单位呢？", "科协所属事业单位要压缩到多少个？",
                           plan_hits + plan_hits[:1], traditional=False)
    assert inputs["question_block"] == ("问题（结合上文补全）：科协所属事业单位要压缩到多少个？\n"
                                        "用户原话：那事业单位呢？")
    assert inputs["refs"] == "[二、2]、[二、1]、[二、3]"
    assert inputs["clauses"].count("\n\n[") == 2  # top 3 only
    messages = build_prompt().format_messages(**inputs)
    assert [m.type for m in messages] == ["system", "human"]
    assert "本题请用简体中文作答" in messages[0].content
    assert messages[1].content.startswith(
        "方案条款（可引用的编号：[二、2]、[二、1]、[二、3]）：\n\n[二、2] ")


def _extractive(plan_hits) -> Answer:
    hit = plan_hits[0]
    cite = make_citation(hit.passage, [1], False, hit.score)
    return Answer(text="据方案第二部分第2条：\n“…”\n（出处：第二部分第2条）", found=True,
                  citations=[cite])


def test_answerer_with_an_injected_model(plan_hits):
    extractive = _extractive(plan_hits)
    llm = LLMAnswerer(FakeListChatModel(responses=["压缩至13个[二、3][二、2]。"]))
    a = llm.answer("q", "q", plan_hits, extractive)
    # 13 is in 二、2, which is cited: accepted, cited refs first.
    assert a.source == "llm"
    assert a.text == "压缩至13个[二、3][二、2]。\n（出处：第二部分第2条）"
    assert [c.ref for c in a.citations] == ["二、3", "二、2"]
    assert a.citations[1] == extractive.citations[0]


def test_answerer_never_raises(plan_hits, caplog):
    extractive = _extractive(plan_hits)

    def broken(_prompt):
        raise RuntimeError("connection refused\nsecond line")

    llm = LLMAnswerer(RunnableLambda(broken))
    with caplog.at_level(logging.WARNING, logger="planqa"):
        assert llm.answer("q", "q", plan_hits, extractive) is extractive
    [line] = _fallback_logged(caplog)
    assert line == ("LLM call failed (RuntimeError: connection refused second line); "
                    "using the extractive answer")
    assert LLMAnswerer(FakeListChatModel(responses=["x"])).answer("q", "q", [], extractive) \
        is extractive
