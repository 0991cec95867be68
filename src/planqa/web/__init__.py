"""The web chat for staff: a Gradio Blocks UI and plain JSON routes on one FastAPI app.

    planqa.web.app.create_app(qa=None, settings=None) -> FastAPI   the app, warmed up
    planqa.web.app.serve(settings)                     run it with uvicorn; "ready at …"

Routes on the app:
    /                 the chat (Gradio; a login page when a credential is set)
    /gradio_api/…     Gradio's own API; api_name="ask" answers (question, history)
    POST /api/ask     JSON in, Answer.to_dict() out (bearer token when PLANQA_API_TOKEN is set)
  Every route but the login page and health needs a credential once PLANQA_AUTH or
  PLANQA_API_TOKEN is set (security.py guards them all, whatever adds them).
    POST /api/feedback  a vote (and comment) on an answer, into the feedback log
    GET  /api/health  {"status": "ok", …} once warm, 503 when the index is unavailable

One job per module, each depending only on those above it:
    feedback.py   the append-only feedback log and its records
    convert.py    a stored answer re-expressed in the other script
    render.py     HTML for answers, source cards, notices and the plan's outline
    workers.py    WorkerPool: answer worker processes, a library each (PLANQA_WORKERS > 1)
    service.py    ChatService: the library, its readiness and the answer workers
    api.py        the JSON routes: body reading, validation, the exception → response map
    handlers.py   what the page does on each event (ask, switch script, vote, …)
    ui.py         the Gradio Blocks: theme, styles, layout, wiring of events to handlers
    security.py   Guard, the ASGI middleware around every route: access, origin, content
                  type, body and time limits, uploads off, login rate limit, headers
    app.py        create_app and serve (uvicorn)
    static/planqa.css  the page's styles

Nothing below this package imports it. Nothing a user sends reaches a file path or a
shell: the only file written is the feedback log, whose path comes from the settings.
"""

import os

# Gradio reads these when it is imported and when Blocks are built; the page must not
# call home (analytics, version checks, Hugging Face telemetry). Set here, so they hold
# before any module of the package imports gradio.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
