"""Run the planqa web chat: `python app.py [--host H] [--port P] [--root-path /prefix]`.

Defaults come from PLANQA_HOST / PLANQA_PORT / PLANQA_ROOT_PATH (see planqa.config).
The model and index are loaded before "ready at http://…" is printed.
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; their defaults are the environment's settings."""
    from planqa.config import Settings

    env = Settings.from_env()
    parser = argparse.ArgumentParser(description="planqa web chat (Gradio + JSON API)")
    parser.add_argument("--host", default=env.host, help=f"bind address (default {env.host})")
    parser.add_argument("--port", type=int, default=env.port,
                        help=f"TCP port (default {env.port})")
    parser.add_argument("--root-path", default=env.root_path,
                        help="URL prefix when served behind a reverse proxy, e.g. /planqa")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Parse flags and serve until interrupted."""
    from planqa.config import Settings
    from planqa.web.app import serve

    args = parse_args(argv)
    root = args.root_path.rstrip("/")
    if root and not root.startswith("/"):
        root = "/" + root
    settings = Settings.from_env().replace(host=args.host, port=args.port, root_path=root)
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
