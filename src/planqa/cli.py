"""`planqa` command line: a thin skin over the library.

    planqa model            materialize the embedding model and its ONNX exports (offline)
    planqa index            (re)build the FAISS index under PLANQA_INDEX_DIR
    planqa ask "问题"        answer one question (--json for machines)
    planqa chat             a terminal conversation with history
    planqa eval             retrieval and answer metrics on eval/ (--gate to enforce thresholds)
    planqa link "问题" 二、3  attach a question link to a passage (then `planqa index`)
    planqa links [--suggest] list the links, or the 👎 feedback questions to review

The benchmark and the load generator are tools of a checkout, not of the library:
`python -m tools.bench` and `python -m tools.load` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from planqa.config import Settings


def _cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    from planqa.embeddings import resolve_model_path

    t0 = time.perf_counter()
    path = resolve_model_path(settings)
    print(f"model ready at {path} ({time.perf_counter() - t0:.1f} s)")
    if Path(path).is_dir():  # a hub name has no directory to export beside
        from planqa.onnx_backend import ensure_onnx

        t0 = time.perf_counter()
        out = ensure_onnx(Path(path))
        print(f"ONNX fp32 and int8 ready at {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


def _cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from planqa.corpus import load_plan
    from planqa.embeddings import load_embeddings
    from planqa.index import build_index, save_index
    from planqa.links import read_links

    t0 = time.perf_counter()
    plan = load_plan(settings.plan_path)
    index = build_index(plan, load_embeddings(settings), read_links(settings.links_path))
    save_index(index, settings.index_dir)
    m = index.manifest
    print(f"indexed {m['units']} units ({m['dim']}-d, model {m['model']}) into "
          f"{settings.index_dir} in {time.perf_counter() - t0:.1f} s")
    return 0


def _print_answer(answer, as_json: bool) -> None:
    if as_json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return
    print(answer.text)
    for label, cites in (("出处", answer.citations), ("可能相关", answer.related)):
        for c in cites:
            print(f"  [{label}] {c.ref} {c.title}")


def _cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from planqa.chain import PlanQA

    qa = PlanQA(settings)
    _print_answer(qa.ask(args.question), args.json)
    return 0


def _cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    from planqa.chain import PlanQA

    qa = PlanQA(settings)
    qa.warm_up()
    history: list[tuple[str, str]] = []
    # Piped input (`planqa chat < questions.txt`) is read line by line, with no prompt,
    # each answer on its own lines; blank lines are skipped. A terminal ends on a blank
    # line or Ctrl-D.
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"planqa — 关于{qa.plan.profile.quoted_title}的问答。空行或 Ctrl-D 退出。")
    for question in _questions(interactive):
        try:
            answer = qa.ask(question, history)
        except ValueError as exc:
            print(exc)
            continue
        if not interactive:
            print(f"问：{question}")
        _print_answer(answer, False)
        print()
        history.append((question, answer.text))
    return 0


def _questions(interactive: bool):
    """The questions of a chat: prompted at a terminal, else one per input line."""
    if not interactive:
        yield from (line.strip() for line in sys.stdin if line.strip())
        return
    while True:
        try:
            question = input("问> ").strip()
        except EOFError:
            return
        if not question:
            return
        yield question


def _cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from planqa.evaluation import main as eval_main

    return eval_main(settings, Path(args.set) if args.set else None, gate=args.gate,
                     out=Path(args.out) if args.out else None, links=not args.no_links)


def _cmd_link(args: argparse.Namespace, settings: Settings) -> int:
    from planqa.corpus import load_plan
    from planqa.links import add_link

    link = add_link(settings.links_path, args.question, args.ref, load_plan(settings.plan_path))
    print(f"linked “{link.question}” to {link.ref} in {settings.links_path}; "
          "run `make index` (or `planqa index`) to use it")
    return 0


def _cmd_links(args: argparse.Namespace, settings: Settings) -> int:
    from planqa.links import read_links, suggestions

    if args.suggest:
        rows = suggestions(settings.feedback_log)
        for r in rows:
            cited = ", ".join(x for x in r["cited"] if x) or "-"
            note = f"  # {r['comment']}" if r["comment"] else ""
            print(f"{r['question']}\t(cited {cited}){note}")
        print(f"{len(rows)} question(s) marked 👎 in {settings.feedback_log}; link one with "
              '`planqa link "问题" 二、3`', file=sys.stderr)
        return 0
    for link in read_links(settings.links_path):
        print(f"{link.ref}\t{link.question}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="planqa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("model", help="materialize the embedding model and its ONNX exports"
                   ).set_defaults(fn=_cmd_model)
    sub.add_parser("index", help="build the FAISS index").set_defaults(fn=_cmd_index)
    p = sub.add_parser("ask", help="answer one question")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.set_defaults(fn=_cmd_ask)
    sub.add_parser("chat", help="terminal conversation").set_defaults(fn=_cmd_chat)
    p = sub.add_parser("eval", help="evaluate on the eval set")
    p.add_argument("--set", help="JSONL eval set (default eval/qa.jsonl; eval/heldout.jsonl "
                   "is the held-out set)")
    p.add_argument("--gate", action="store_true", help="exit 1 below the thresholds")
    p.add_argument("--out", help="write the report as JSON here")
    p.add_argument("--no-links", action="store_true",
                   help="without the question links (an in-memory index), to show their gain")
    p.set_defaults(fn=_cmd_eval)
    p = sub.add_parser("link", help="attach a question to a passage (a question link)")
    p.add_argument("question")
    p.add_argument("ref", help="the passage: 二、3, 四 (a section's lead) or 前言")
    p.set_defaults(fn=_cmd_link)
    p = sub.add_parser("links", help="list the question links")
    p.add_argument("--suggest", action="store_true",
                   help="list questions staff marked 👎, to review as new links")
    p.set_defaults(fn=_cmd_links)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from planqa.index import IndexUnavailable

    try:
        return int(args.fn(args, Settings.from_env()) or 0)
    except IndexUnavailable as exc:
        print(f"planqa: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"planqa: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
