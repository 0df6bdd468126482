"""
CORS in a real browser: headless Chromium runs a page from one origin that
talks MCP to a real bridge on another origin with C{fetch()}.

Pieces:

  - the bridge: C{twistd -n mcpbridge} (L{tests.support.Bridge}) on
    127.0.0.1 in front of C{python -m mcpbridge.demo_server};
  - the page: C{tests/js/browser_cors.html}, served by L{PageServer} (a
    stdlib HTTP server on 127.0.0.1, another port, so another origin).  It
    POSTs C{initialize} with a JSON body and the MCP headers (which makes
    Chromium send a CORS preflight first), reads C{Mcp-Session-Id} (only
    possible when the bridge exposes it), sends C{notifications/initialized}
    and C{tools/list} in that session, then DELETEs it, and records each
    step's outcome in C{window.__corsResult};
  - the driver: C{tests/js/browser_cors.mjs} under Node 22, which launches
    C{/usr/bin/chromium} through C{playwright-core} with a fresh profile,
    waits for the page's result, and prints it as JSON along with every
    request Chromium made (preflights included, with Chromium's reason when
    CORS blocks one) and the console messages.

Origins.  The bridge accepts loopback origins (C{http://localhost:*},
C{http://127.0.0.1:*}, C{http://[::1]:*}) by default and others only when
named with C{--allow-origin}.  To have a page whose origin is I{not}
loopback while every socket stays on 127.0.0.1, Chromium resolves the made-up
name C{app.test} to 127.0.0.1 (C{--host-resolver-rules}, see the driver); the
page is loaded from C{http://app.test:PORT/} and calls the bridge at
C{http://127.0.0.1:BRIDGEPORT/mcp}.  Both ends are loopback addresses, so
Chromium's Private/Local Network Access checks (which guard requests from a
less private address space to a more private one) do not apply, and no flag
is needed for them.

Chromium comes from Debian's C{chromium} package; C{.ci/run} installs it
when missing.  Without it the tests are skipped, except under CI (C{CI}
set), where they fail.  Every wait is bounded; the Chromium processes of a
run are tracked by pid and killed by pid if they outlive it, and the
profile directory is removed.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from twisted.trial.unittest import SkipTest

from tests import support
from tests.jstools import jsTools
from tests.support import HOST, ROOT, Bridge, descendants, snapshot, still_alive, wait_until

CHROMIUM = "/usr/bin/chromium"
DRIVER = os.path.join(ROOT, "tests", "js", "browser_cors.mjs")
PAGE = os.path.join(ROOT, "tests", "js", "browser_cors.html")
DEMO = [sys.executable, "-m", "mcpbridge.demo_server"]
#: Some tools of the demo server (see mcpbridge/demo_server.py).
DEMO_TOOLS = {"add", "countdown", "echo", "whoami"}

#: A host name that is not loopback to the bridge, but that Chromium resolves
#: to 127.0.0.1 (the driver's --map).
PAGE_HOST = "app.test"
#: Seconds the driver gets for one page (launch, load, every fetch).
BROWSER_TIMEOUT = 45.0
#: Extra seconds before the test gives up on the driver process itself.
DRIVER_GRACE = 20.0
#: Seconds Chromium's processes get to be gone once the driver has exited.
CHROMIUM_GONE = 10.0

#: No stateless pool: every process below the bridge is then a session's
#: child, so "no child was started" is "no process ever appeared below it".
BRIDGE_OPTIONS = ["--pool-size", "0"]

#: The request headers the bridge must allow in preflights.
ALLOWED_HEADERS = ["content-type", "accept", "authorization", "x-api-key", "mcp-session-id",
                   "mcp-protocol-version", "mcp-method", "mcp-name", "last-event-id"]


def chromium() -> str:
    """
    The Chromium executable.

    @raise SkipTest: when it is missing outside CI.
    @raise AssertionError: when it is missing under CI.
    """
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = (f"{CHROMIUM} not found: the browser tests need Debian's chromium package "
              f"(apt-get install chromium; .ci/run installs it)")
    if os.environ.get("CI"):
        raise AssertionError(reason)
    raise SkipTest(reason)


def playwright(js: str) -> None:
    """
    Check that C{playwright-core} is installed in C{js}.

    @raise SkipTest: when it is missing outside CI.
    @raise AssertionError: when it is missing under CI.
    """
    if os.path.isfile(os.path.join(js, "playwright-core", "package.json")):
        return
    reason = f"playwright-core is not installed in {js}; run tests/run"
    if os.environ.get("CI"):
        raise AssertionError(reason)
    raise SkipTest(reason)


_known_options: List[str] = []


def known_options() -> List[str]:
    """The options C{twistd mcpbridge} knows, from its --help (read once)."""
    if not _known_options:
        out = subprocess.run([support.TWISTD, "mcpbridge", "--help"], capture_output=True,
                             text=True, timeout=60, env=support.child_env(), cwd=ROOT).stdout
        _known_options.extend(word.split("=")[0].rstrip(",") for word in out.split()
                              if word.startswith("--"))
    return _known_options


# ------------------------------------------------------------ the page ---

class PageServer:
    """
    Serves the test page (at every path but C{/favicon.ico}, which gets an
    empty 204) on 127.0.0.1, in a thread; C{url(host)} is its address
    under a host name of choice.
    """

    def __init__(self) -> None:
        with open(PAGE, "rb") as f:
            page = f.read()
        self.requests: List[Tuple[str, str, Optional[str]]] = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(("GET", self.path, self.headers.get("Host")))
                if self.path.startswith("/favicon.ico"):
                    self.send_response(204)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       name="browser-test-page", daemon=True)

    def start(self) -> "PageServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def origin(self, host: str) -> str:
        return f"http://{host}:{self.port}"

    def url(self, host: str, bridge: Bridge, **params: str) -> str:
        from urllib.parse import urlencode

        return f"{self.origin(host)}/cors.html?" + urlencode({"bridge": bridge.url, **params})


# ---------------------------------------------------------- the driver ---

class BrowserRun:
    """
    One run of the driver: what it printed, and the processes seen meanwhile.

    @ivar report: the driver's JSON (C{ok}, C{result}, C{network},
        C{console}, ...).
    @ivar bridge_children: every pid seen below the bridge during the run.
    @ivar browser_pids: every process seen below the driver (Chromium's).
    """

    def __init__(self, report: Dict[str, Any], bridge_children: Set[int],
                 browser_pids: Set[int], stderr: str, seconds: float) -> None:
        self.report = report
        self.bridge_children = bridge_children
        self.browser_pids = browser_pids
        self.stderr = stderr
        self.seconds = seconds

    @property
    def steps(self) -> Dict[str, Dict[str, Any]]:
        steps: Dict[str, Dict[str, Any]] = (self.report.get("result") or {}).get("steps", {})
        return steps

    def requests(self, bridge: Bridge, method: Optional[str] = None) -> List[Dict[str, Any]]:
        """The requests Chromium sent to C{bridge} (of C{method})."""
        return [r for r in self.report.get("network", [])
                if str(r.get("url", "")).startswith(bridge.base)
                and (method is None or r.get("method") == method)]

    def describe(self) -> str:
        text = json.dumps(self.report, indent=1, sort_keys=True)
        return f"driver report:\n{text[-6000:]}\ndriver stderr:\n{self.stderr[-2000:]}"


def _kill_pids(snap: Sequence[Tuple[int, int]]) -> List[int]:
    """SIGKILL each process of C{snap} that is still that very process."""
    killed = []
    for pid in still_alive(snap):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def _mentioning(text: str) -> List[int]:
    """
    The live processes whose command line holds C{text}: with the run's
    unique scratch directory, Chromium's crash handlers, which detach from
    the browser at once (so are not below the driver) but name their
    database under that directory.
    """
    needle = text.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def browse(url: str, node: str, js: str, browser: str,
           bridge: Optional[Bridge] = None) -> BrowserRun:
    """
    Run the driver on C{url} and wait (bounded) for its report, watching
    the processes below C{bridge} meanwhile.  Chromium's processes are gone
    when this returns (killed by pid if they linger), and so is the profile.

    @raise AssertionError: when the driver does not finish in time or
        prints no report.
    """
    started = time.monotonic()
    bridge_children: Set[int] = set()
    browser_procs: Dict[int, int] = {}  # pid -> starttime
    with tempfile.TemporaryDirectory(prefix="mcpbridge-chromium-",
                                     ignore_cleanup_errors=True) as tmp:
        profile = os.path.join(tmp, "profile")
        os.mkdir(profile)
        # Chromium and Node write only inside tmp: HOME (~/.pki and the
        # like), TMPDIR (Playwright's scratch files), XDG dirs.
        env = dict(os.environ, HOME=tmp, TMPDIR=tmp, MCPBRIDGE_JS=js,
                   XDG_CONFIG_HOME=os.path.join(tmp, "config"),
                   XDG_CACHE_HOME=os.path.join(tmp, "cache"))
        out_path, err_path = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        argv = [node, DRIVER, "--chromium", browser, "--profile", profile,
                "--map", PAGE_HOST, "--timeout", str(BROWSER_TIMEOUT), url]
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            # SIGTERM to the driver if the test process dies; Playwright
            # then closes the browser.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_f, stderr=err_f,
                                    env=env, cwd=tmp, preexec_fn=support.die_with_parent)
        deadline = started + BROWSER_TIMEOUT + DRIVER_GRACE

        def look(everywhere: bool) -> None:
            pids = descendants(proc.pid) + (_mentioning(tmp) if everywhere else [])
            for pid, start in snapshot(pids):
                browser_procs.setdefault(pid, start)

        try:
            polls = 0
            while proc.poll() is None and time.monotonic() < deadline:
                look(polls % 10 == 0)
                polls += 1
                if bridge is not None:
                    bridge_children.update(bridge.children())
                time.sleep(0.05)
            timed_out = proc.poll() is None
            if timed_out:
                proc.send_signal(signal.SIGTERM)  # Playwright closes Chromium
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    look(True)
                    proc.kill()
                    proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                look(True)
                proc.kill()
                proc.wait(timeout=10)
            for pid, start in snapshot(_mentioning(tmp)):
                browser_procs.setdefault(pid, start)
            snap = list(browser_procs.items())
            if not wait_until(lambda: not still_alive(snap), CHROMIUM_GONE):
                _kill_pids(snap)
                wait_until(lambda: not still_alive(snap), 5.0)
        if bridge is not None:
            bridge_children.update(bridge.children())
        with open(out_path, "rb") as f:
            stdout = f.read().decode("utf-8", "replace")
        with open(err_path, "rb") as f:
            stderr = f.read().decode("utf-8", "replace")
    left = still_alive(snap)
    assert not left, f"Chromium processes {left} survived SIGKILL"
    assert not os.path.exists(tmp), f"the profile directory {tmp} was not removed"
    if timed_out:
        raise AssertionError(f"the browser driver did not finish within "
                             f"{BROWSER_TIMEOUT + DRIVER_GRACE} s\nstdout: {stdout[-4000:]}"
                             f"\nstderr: {stderr[-4000:]}")
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise AssertionError(f"the browser driver printed no report (exit {proc.returncode})"
                             f"\nstdout: {stdout[-4000:]}\nstderr: {stderr[-4000:]}")
    return BrowserRun(report, bridge_children, set(browser_procs), stderr,
                      time.monotonic() - started)


# ------------------------------------------------------------ the tests ---

def children_started(log: str) -> List[int]:
    """The pids of the children a bridge's log says it started."""
    return [int(pid) for pid in re.findall(r"child \S+ started: pid (\d+)", log)]


def _header_list(value: Optional[str]) -> List[str]:
    return [h.strip().lower() for h in (value or "").split(",") if h.strip()]


def _lower(headers: Optional[Dict[str, str]]) -> Dict[str, str]:
    return {k.lower(): v for k, v in (headers or {}).items()}


class BrowserCORSTests(support.BridgeTestCase):
    """
    A page on one origin drives an MCP session on the bridge with fetch().
    """

    bridge_options = BRIDGE_OPTIONS

    def setUp(self) -> None:
        self.browser = chromium()
        self.node, self.js = jsTools()
        playwright(self.js)
        self.page = PageServer().start()
        self.addCleanup(self.page.stop)

    # -- helpers

    def bridge(self, options: Sequence[str] = ()) -> Bridge:
        bridge = self.start_bridge(DEMO, options)
        self.wait_no_children(bridge, "before any session")
        return bridge

    def wait_no_children(self, bridge: Bridge, when: str, timeout: float = 10.0) -> None:
        """Wait (bounded) until no process is below C{bridge}."""
        # (BridgeTestCase.wait_for_children cannot wait for 0: [] is false.)
        gone = wait_until(lambda: not bridge.children(), timeout)
        self.assertTrue(gone, f"processes below the bridge {when}: {bridge.children()}")

    def need_option(self, option: str) -> None:
        if option not in known_options():
            raise SkipTest(f"this mcpbridge has no {option} option")

    def run_page(self, bridge: Bridge, host: str, **params: str) -> BrowserRun:
        run = browse(self.page.url(host, bridge, **params), self.node, self.js, self.browser,
                     bridge)
        self.assertTrue(run.report.get("ok"), f"the page did not report\n{run.describe()}")
        self.assertEqual(run.report["result"].get("origin"), self.page.origin(host),
                         run.describe())
        self.assertTrue(run.browser_pids, "no Chromium process was ever seen")
        return run

    def assert_preflight_allowed(self, run: BrowserRun, bridge: Bridge, origin: str) -> None:
        """
        Chromium preflighted the cross-origin POST, and the bridge's answer
        allowed this origin, the MCP headers and the POST.
        """
        preflights = run.requests(bridge, "OPTIONS")
        self.assertTrue(preflights, f"no CORS preflight was sent\n{run.describe()}")
        first = preflights[0]
        self.assertEqual(first.get("origin"), origin, run.describe())
        self.assertIn(first.get("status"), (200, 204), run.describe())
        headers = _lower(first.get("headers"))
        self.assertEqual(headers.get("access-control-allow-origin"), origin, run.describe())
        allowed = _header_list(headers.get("access-control-allow-headers"))
        missing = [h for h in ALLOWED_HEADERS if h not in allowed]
        self.assertEqual(missing, [], f"not in Access-Control-Allow-Headers\n{run.describe()}")
        methods = _header_list(headers.get("access-control-allow-methods"))
        for method in ("post", "delete"):
            self.assertIn(method, methods, run.describe())

    def assert_session_worked(self, run: BrowserRun, bridge: Bridge) -> None:
        """Every step of the page succeeded, the session id was readable."""
        steps = run.steps
        init = steps.get("initialize", {})
        self.assertTrue(init.get("ok"), f"initialize failed\n{run.describe()}")
        self.assertEqual(init.get("status"), 200, run.describe())
        self.assertTrue(init.get("sessionId"),
                        f"Mcp-Session-Id is not readable by the page (not exposed?)\n"
                        f"{run.describe()}")
        self.assertIn("mcp-session-id", init.get("readableHeaders", []), run.describe())
        self.assertEqual(init.get("protocolVersion"), "2025-06-18", run.describe())
        self.assertIsNone(init.get("rpcError"), run.describe())
        self.assertEqual(steps.get("initialized", {}).get("status"), 202, run.describe())
        tools = steps.get("toolsList", {})
        self.assertTrue(tools.get("ok"), f"tools/list failed\n{run.describe()}")
        self.assertLessEqual(DEMO_TOOLS, set(tools.get("tools") or ()), run.describe())
        delete = steps.get("delete", {})
        self.assertTrue(delete.get("ok"), f"DELETE failed\n{run.describe()}")
        self.assertIn(delete.get("status"), (200, 204), run.describe())
        # The session had one child, the bridge's session is the one whose id
        # the page read, and DELETE ended it.
        log = bridge.current_log()
        started = children_started(log)
        self.assertEqual(len(started), 1, f"children started: {started}\n{log[-3000:]}")
        self.assertLessEqual(run.bridge_children, set(started), log[-3000:])
        self.assertIn(f"session {init['sessionId']} started", log)
        self.wait_no_children(bridge, "after DELETE (the session's child should be gone)")
        health = bridge.health()
        self.assertEqual(health.get("sessions"), 0, health)

    def assert_refused(self, run: BrowserRun, bridge: Bridge, why: str) -> None:
        """
        fetch() rejected as it does on a CORS refusal, Chromium says CORS
        blocked it at the preflight (C{why}: its name for the reason), so the
        POST itself was never sent, and the bridge never started a child.
        """
        init = run.steps.get("initialize", {})
        self.assertFalse(init.get("ok"), f"initialize was not refused\n{run.describe()}")
        self.assertEqual(init.get("error"), "TypeError", run.describe())
        self.assertNotIn("status", init, run.describe())
        self.assertEqual(sorted(run.steps), ["initialize"], run.describe())
        blocked = [r["failed"]["corsError"] for r in run.requests(bridge)
                   if (r.get("failed") or {}).get("corsError")]
        self.assertEqual(blocked, [why], f"Chromium's CORS errors\n{run.describe()}")
        posts = [r for r in run.requests(bridge, "POST") if "status" in r]
        self.assertEqual(posts, [], f"a POST reached the bridge\n{run.describe()}")
        self.assertEqual(run.bridge_children, set(),
                         "the bridge started a child for a refused origin")
        log = bridge.current_log()
        self.assertEqual(children_started(log), [], log[-3000:])
        health = bridge.health()
        for key in ("sessions", "starting", "closing"):
            self.assertEqual(health.get(key), 0, health)
        self.assertEqual(health.get("children"), [], health)

    # -- the cases

    def test_allowed_origin(self) -> None:
        """
        A non-loopback origin given with --allow-origin: the preflight is
        answered for it, and the page can initialize, read Mcp-Session-Id,
        list tools and DELETE the session.
        """
        origin = self.page.origin(PAGE_HOST)
        bridge = self.bridge(["--allow-origin", origin])
        run = self.run_page(bridge, PAGE_HOST)
        self.assert_preflight_allowed(run, bridge, origin)
        self.assert_session_worked(run, bridge)

    def test_allowed_origin_pattern(self) -> None:
        """--allow-origin with a * pattern admits the page's origin too."""
        bridge = self.bridge(["--allow-origin", "http://*.test:*"])
        run = self.run_page(bridge, PAGE_HOST)
        self.assert_preflight_allowed(run, bridge, self.page.origin(PAGE_HOST))
        self.assert_session_worked(run, bridge)

    def test_refused_origin(self) -> None:
        """
        The same page against a bridge without --allow-origin: the fetch
        rejects with a TypeError, and no child is started for it.
        """
        bridge = self.bridge()
        run = self.run_page(bridge, PAGE_HOST)
        self.assert_refused(run, bridge, "PreflightMissingAllowOriginHeader")
        # The bridge refused the preflight itself, allowing nothing.
        preflights = run.requests(bridge, "OPTIONS")
        self.assertEqual(len(preflights), 1, f"preflights\n{run.describe()}")
        self.assertEqual(preflights[0].get("status"), 403, run.describe())
        headers = _lower(preflights[0].get("headers"))
        self.assertEqual([h for h in headers if h.startswith("access-control-")], [],
                         run.describe())

    def test_loopback_origin_by_default(self) -> None:
        """
        A page on http://localhost:PORT needs no --allow-origin: loopback
        origins are allowed by default.
        """
        bridge = self.bridge()
        run = self.run_page(bridge, "localhost")
        self.assert_preflight_allowed(run, bridge, self.page.origin("localhost"))
        self.assert_session_worked(run, bridge)

    def test_api_key(self) -> None:
        """
        With --api-key, the page sends X-API-Key on every request; the
        preflight (which a browser sends without it) is answered without the
        key, and the session works.
        """
        self.need_option("--api-key")
        origin = self.page.origin(PAGE_HOST)
        bridge = self.bridge(["--allow-origin", origin, "--api-key", "browser-test-key"])
        run = self.run_page(bridge, PAGE_HOST, apikey="browser-test-key")
        self.assert_preflight_allowed(run, bridge, origin)
        self.assert_session_worked(run, bridge)

    def test_api_key_wrong(self) -> None:
        """
        A wrong key: the preflight still passes, and the page can read the
        bridge's 401 (the refusal carries the CORS headers), with no child
        started.
        """
        self.need_option("--api-key")
        origin = self.page.origin(PAGE_HOST)
        bridge = self.bridge(["--allow-origin", origin, "--api-key", "browser-test-key"])
        run = self.run_page(bridge, PAGE_HOST, apikey="not-the-key")
        self.assert_preflight_allowed(run, bridge, origin)
        init = run.steps.get("initialize", {})
        self.assertEqual(init.get("status"), 401, run.describe())
        self.assertEqual(run.bridge_children, set(), "a child was started without the key")
        log = bridge.current_log()
        self.assertEqual(children_started(log), [], log[-3000:])

    def test_credentials_refused_without_option(self) -> None:
        """
        fetch() with credentials: 'include' needs
        Access-Control-Allow-Credentials: true; without
        --cors-allow-credentials the bridge does not send it, so Chromium
        refuses, and no child is started.
        """
        self.need_option("--cors-allow-credentials")
        origin = self.page.origin(PAGE_HOST)
        bridge = self.bridge(["--allow-origin", origin])
        run = self.run_page(bridge, PAGE_HOST, credentials="include")
        self.assert_refused(run, bridge, "PreflightInvalidAllowCredentials")

    def test_credentials_allowed(self) -> None:
        """
        With --cors-allow-credentials a credentialed fetch() works: the
        bridge answers with the page's own origin (never *) and
        Access-Control-Allow-Credentials: true.
        """
        self.need_option("--cors-allow-credentials")
        origin = self.page.origin(PAGE_HOST)
        bridge = self.bridge(["--allow-origin", origin, "--cors-allow-credentials"])
        run = self.run_page(bridge, PAGE_HOST, credentials="include")
        self.assert_preflight_allowed(run, bridge, origin)
        preflight = _lower(run.requests(bridge, "OPTIONS")[0].get("headers"))
        self.assertEqual(preflight.get("access-control-allow-credentials"), "true",
                         run.describe())
        self.assert_session_worked(run, bridge)

    def test_max_age(self) -> None:
        """
        Chromium caches a preflight answer as long as Access-Control-Max-Age
        says: with the default one preflight serves the whole session (the
        bridge allowed Mcp-Session-Id and DELETE up front); with
        --cors-max-age 0 every request is preflighted again.
        """
        self.need_option("--cors-max-age")
        origin = self.page.origin(PAGE_HOST)
        cases: List[Tuple[List[str], int, Optional[str]]] = [
            ([], 1, None), (["--cors-max-age", "0"], 4, "0")]
        for options, preflights, age in cases:
            bridge = self.bridge(["--allow-origin", origin, *options])
            run = self.run_page(bridge, PAGE_HOST)
            self.assert_session_worked(run, bridge)
            seen = run.requests(bridge, "OPTIONS")
            self.assertEqual(len(seen), preflights, f"{options}\n{run.describe()}")
            for request in seen:
                header = _lower(request.get("headers")).get("access-control-max-age")
                self.assertIsNotNone(header, run.describe())
                if age is not None:
                    self.assertEqual(header, age, run.describe())
