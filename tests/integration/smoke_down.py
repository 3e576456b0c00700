#!/usr/bin/env python3
"""tests/integration/smoke_down.py — what each web server setup answers
while darkroom.fcgi is down (stopped, crashed, its socket gone):
tests/integration/test_webservers.sh runs it after smoke.py, once it has
taken the app away.

The server answers for the app with a problem document of its own, with
the status it uses for an unreachable app (DARKROOM_SMOKE_DOWN_STATUS:
502 from nginx, 503 from lighttpd and mod_proxy_fcgi, 500 from mod_fcgid,
whose app dies without answering), and its other errors stay problem
documents without the one-year Cache-Control of /media/.

Environment: DARKROOM_URL, DARKROOM_API_KEY (harness.py);
DARKROOM_SMOKE_DOWN_STATUS, the status expected for an API request.
Not named test_*.py, so run-integration.sh does not run it.
"""

import os
import secrets

from harness import case, expect, expect_problem, get, post, run

STATUS = int(os.environ.get("DARKROOM_SMOKE_DOWN_STATUS", "0"))
RUN = secrets.token_hex(4)


@case("with the app down, API requests get the web server's problem document")
def _():
    expect(STATUS >= 500, "DARKROOM_SMOKE_DOWN_STATUS is not set")
    expect_problem(get("/healthz", key=None), STATUS)
    expect_problem(post("/v1/jobs", {"adapter": "null", "model": "a/b", "input": {"p": "x"}}),
                   STATUS)


@case("with the app down, a missing /media/ file is still a 404 problem "
      "without the one-year Cache-Control")
def _():
    r = get(f"/media/ab/missing-{RUN}.png", key=None)
    cc = r.headers.get("Cache-Control") or ""
    expect("immutable" not in cc and "max-age=31536000" not in cc,
           f"a 404 under /media/ carries the one-year Cache-Control: {cc!r}")
    expect_problem(r, 404)


run()
