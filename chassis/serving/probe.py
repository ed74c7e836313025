"""Container health check: `python -m chassis.serving.probe` exits 0 while /healthz answers 200.

The image has no curl, so its HEALTHCHECK (Dockerfile) runs this instead. It imports nothing
but the standard library (the packages above it import nothing either). It GETs
http://127.0.0.1:${PORT:-8000}/healthz, the liveness endpoint that never touches the
database, and exits 0 on HTTP 200. Anything else (refused, timed out, another status)
prints one line to stderr, which Docker keeps in `docker inspect`, and exits 1: Docker
reads 1 as unhealthy and reserves 2. Set PORT when GUNICORN_BIND moves off port 8000.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

# Inside Docker's HEALTHCHECK --timeout (5 s, Dockerfile), so a hung server is reported by
# this line rather than by Docker killing the check.
TIMEOUT_S = 3.0
DEFAULT_PORT = "8000"


def main() -> int:
    """Probe /healthz on this host and return the exit status: 0 healthy, 1 not."""
    port = os.environ.get("PORT", "").strip() or DEFAULT_PORT
    if not port.isdigit():
        print(f"unhealthy: PORT: must be a port number (got {port!r})", file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{port}/healthz"
    # No proxies: an HTTP_PROXY set for the app's outbound calls must not catch loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_S) as response:
            status: int = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        status = exc.code
    except OSError as exc:  # refused, reset, timed out (URLError is an OSError too)
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        print(f"unhealthy: GET {url} failed: {' '.join(str(reason).split())}", file=sys.stderr)
        return 1
    if status == 200:
        return 0
    print(f"unhealthy: GET {url} answered HTTP {status}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
