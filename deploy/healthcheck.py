"""The container's health check: exit 0 when the gateway's ``/healthz`` answers 200.

Run by the image's ``HEALTHCHECK`` and compose's ``healthcheck`` with the venv's
python (the slim image has no curl). The URL is ``$SALON_HEALTHZ_URL``, default
``http://127.0.0.1:8765/healthz``: change it with the port of ``api.listen``.
Standard library only; no token is needed for ``/healthz``.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8765/healthz"


def main() -> int:
    url = os.environ.get("SALON_HEALTHZ_URL") or DEFAULT_URL
    try:
        with urllib.request.urlopen(url, timeout=4) as answer:
            status = answer.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (OSError, ValueError) as e:
        print(f"unhealthy: {url}: {e}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
