#!/usr/bin/env python3
"""Checks tapedeck's web viewer in a real browser: headless Chromium driven by Selenium.

Run by examples/ui.sh, which records the sessions, writes what the commands say about
them (`show`, `analyze`, `diff`, `cluster` --json) into an expectations directory, and
starts the viewer. URL is always the link tapedeck printed (`.../_tapedeck/ui/?token=...`):
each mode first checks the access rule in the browser (the clean URL without the link
shows the page but no data: the API refuses it; the link lands on the clean URL, the
token gone from the address bar and kept in the origin's storage, no cookie; a web
server on another port of 127.0.0.1 that the browser then visits is sent no token), then
works through the clean URL. Three modes:

  ui_check.py pages --url LINK --expect DIR --shots DIR [--opener FILE]
      the viewer of a store (`tapedeck ui`): the Sessions page and its clusters, every
      run's span tree (the tree of `show`, in the same order), findings pinned at their
      steps, the step panel (conversation, stream chunks, redacted headers), walk back
      with the values that flowed, the Diff page's first divergence, keyboard navigation,
      the theme, no sideways scroll at 1280 px, recorded markup shown as text (no script
      runs, no <img> is made), and the first screen of a 10,000-step session (its time is
      printed). --opener: the page `--open` hands a browser (viewer.html) gets a fresh
      browser in too.
  ui_check.py live --url LINK --session NAME --exchange CMD...
      a record daemon's viewer: CMD makes one more exchange through the daemon, and its
      step appears on the open page without a reload.
  ui_check.py only --url LINK --session NAME --other NAME
      a replay daemon's viewer: the Sessions page lists NAME alone, its run opens, and
      another session of the store (--other) is refused.

Each check prints one "ok" line on stderr; the first failure exits 1 with what differed.
Screenshots go to --shots.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHECKS = 0


class Failed(Exception):
    pass


def ok(msg):
    global CHECKS
    CHECKS += 1
    print("  ok   " + msg, file=sys.stderr)


def fail(msg, *lines):
    raise Failed("\n       ".join([msg, *map(str, lines)]))


def browser(chromium, chromedriver):
    o = webdriver.ChromeOptions()
    o.binary_location = chromium
    # Without the background-networking flags Chromium reaches out at start and, on a
    # closed network, its connections are refused.
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1280,800",
              "--user-data-dir=" + tempfile.mkdtemp(prefix="tapedeck-ui-chromium-")]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=o, service=Service(chromedriver))
    d.set_window_size(1280, 800)
    return d


def wait(d, js, what, timeout=30, *args):
    """Polls a JS expression until it is truthy; returns its value."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = d.execute_script("return (" + js + ")", *args)
        except WebDriverException as e:
            last = e.msg
        else:
            if last:
                return last
        time.sleep(0.05)
    fail(f"timed out after {timeout}s waiting for {what}", f"last value: {last!r}",
         f"page: {d.current_url}", *browser_errors(d))


def browser_errors(d):
    try:
        return [f"console: {e['level']} {e['message']}" for e in d.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    except WebDriverException:
        return []


def go(d, url, frag):
    """Opens a route without reloading the page when the page is already loaded."""
    if d.current_url.split("#")[0] == url:
        d.execute_script("location.hash = arguments[0]", frag)
    else:
        d.get(url + frag)


def press(d, key):
    d.find_element(By.TAG_NAME, "body").send_keys(key)


def shot(d, shots, name):
    # No text caret from the keys sent to the page in the picture.
    d.execute_script("window.getSelection().removeAllRanges(); document.activeElement && document.activeElement.blur()")
    d.save_screenshot(os.path.join(shots, name + ".png"))


def no_sideways(d, where):
    sw, cw = d.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    if sw > cw:
        fail(f"{where}: the page scrolls sideways at {cw} px (content is {sw} px wide)")


def load(path):
    with open(path) as f:
        return json.load(f)


def signature_text(sig):
    return " · ".join(x for x in (sig["detector"], sig["tool"], sig["error"], sig["position"]) if x and x != "-")


def tree_order(show):
    """The span names of `show --json` in depth-first order, children by start time."""
    spans = show["spans"]
    kids = {}
    for i, s in enumerate(spans):
        kids.setdefault(s["parent_span_id"], []).append(i)
    for v in kids.values():
        v.sort(key=lambda i: (spans[i]["start_unix_ns"], -1 if spans[i]["step"] is None else spans[i]["step"]))
    out = []

    def walk(i):
        out.append(spans[i]["name"])
        for c in kids.get(spans[i]["span_id"], []):
            walk(c)
    for r in kids.get(None, []):
        walk(r)
    return out


ROW_LABELS = "[...document.querySelectorAll('.trow[data-span] .label')].map(e => e.textContent)"


# --- access -----------------------------------------------------------------------------

def clean(link):
    if "?token=" not in link:
        fail(f"{link} is not a viewer link (no token)")
    return link.split("?", 1)[0]


def enter(d, link):
    """Checks the access rule in the browser, comes in through the link; returns the clean URL."""
    url = clean(link)
    token = link.split("?token=", 1)[1]
    d.get(url)
    wait(d, "document.querySelector('#main .error')", "the page without its link to say what it needs", 30)
    text = d.execute_script("return document.body ? document.body.innerText : ''")
    if "control token" not in text:
        fail("the viewer showed data without its link (expected the API's refusal)", text[:300])
    d.get(link)
    wait(d, "location.href.split('#')[0] === arguments[0] && document.querySelector('#main')",
         "the link to land on the clean URL", 30, url)
    if "token" in d.current_url:
        fail("the token stayed in the address bar", d.current_url)
    if d.execute_script("return document.cookie"):
        fail("the viewer left a cookie: a browser sends it to every port of the host")
    if d.execute_script("return localStorage.getItem('tapedeck-token')") != token:
        fail("the page did not keep its link's token in its origin's storage")
    check_other_port(d, token)
    d.get(url)
    ok("access: no data without the link; the link lands on the clean URL and leaves no cookie; "
       "a server on another port of 127.0.0.1 gets no token")
    return url


def check_other_port(d, token):
    """A web server on another port of the same host (another user's, say), visited by the
    browser that holds the viewer's access, at the viewer's own path: no request carries
    the token, and its pages cannot read it."""
    import http.server
    import threading

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(str(self.headers))
            body = b"<!doctype html><title>other</title><p>another server</p>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        other = f"http://127.0.0.1:{srv.server_address[1]}/_tapedeck/ui/api/sessions"
        d.get(other)
        wait(d, "document.body && document.body.innerText.includes('another server')",
             "the page of the server on another port", 30)
        if not seen:
            fail("the browser never asked the server on another port")
        leaked = [h for h in seen if token in h]
        if leaked:
            fail("a server on another port of 127.0.0.1 was sent the viewer's token", *leaked)
        if d.execute_script("return localStorage.getItem('tapedeck-token')"):
            fail("a page on another port reads the viewer's token from storage")
    finally:
        srv.shutdown()


def check_opener(args, url):
    """A fresh browser given the page `--open` hands it (no token in any process's arguments)."""
    d = browser(args.chromium, args.chromedriver)
    try:
        d.get("file://" + os.path.abspath(args.opener))
        wait(d, "location.href.split('#')[0] === arguments[0] && document.querySelectorAll('.srow[data-session]').length",
             "the opener page to get a fresh browser into the viewer", 30, url)
        ok(f"--open: {os.path.basename(args.opener)} gets a fresh browser into the viewer")
    finally:
        d.quit()


# --- pages ------------------------------------------------------------------------------

def check_sessions(d, url, exp, shots):
    names = exp["sessions"]
    go(d, url, "#/")
    n = wait(d, "!document.querySelector('.srow .num')?.textContent.includes('…') && "
                "document.querySelectorAll('.cluster').length && document.querySelectorAll('.srow[data-session]').length",
             "the sessions and their clusters")
    shown = d.execute_script("return [...document.querySelectorAll('.srow[data-session]')].map(r => r.dataset.session)")
    if sorted(shown) != sorted(names):
        fail("the Sessions page lists other sessions than `tapedeck sessions`",
             f"page: {sorted(shown)}", f"store: {sorted(names)}")
    count = d.execute_script("return document.querySelector('.toolbar .muted').textContent")
    if count != f"{len(names)} of {len(names)} sessions":
        fail(f"the count says {count!r}")
    ok(f"Sessions: all {n} sessions listed, with summaries")
    want = sorted(signature_text(g["signature"]) for g in exp["cluster"] if g["signature"].get("detector"))
    got = sorted(d.execute_script("return [...document.querySelectorAll('.cluster .sig')].map(e => e.textContent)"))
    if got != want:
        fail("the clusters differ from `tapedeck cluster --json`", f"page: {got}", f"cluster: {want}")
    reps = d.execute_script("return [...document.querySelectorAll('.cluster a')].map(a => a.textContent)")
    want_reps = sorted(g["representative"] for g in exp["cluster"] if g["signature"].get("detector"))
    if sorted(reps) != want_reps:
        fail("cluster representatives differ", f"page: {sorted(reps)}", f"cluster: {want_reps}")
    ok(f"Sessions: {len(got)} clusters of failing sessions, as `tapedeck cluster` groups them, each with its representative")
    no_sideways(d, "Sessions")
    shot(d, shots, "sessions")
    # A row's findings count and errors come from the same analysis.
    for s in names:
        if s == "long-run":
            continue
        a = exp["analyze"][s]
        cell = d.execute_script(
            "const r = document.querySelector(`.srow[data-session='${arguments[0]}']`);"
            "return r ? r.querySelectorAll('.num')[4].textContent : null", s)
        if cell is not None and cell != str(len(a["findings"])):
            fail(f"{s}: the findings column says {cell}, analyze found {len(a['findings'])}")
    ok("Sessions: each row's findings count is `analyze`'s")
    # Keyboard: / filters, j moves, enter opens.
    press(d, "/")
    active = d.execute_script("return document.activeElement.classList.contains('filter')")
    if not active:
        fail("/ does not focus the filter")
    d.switch_to.active_element.send_keys("fault-e")
    wait(d, "[...document.querySelectorAll('.srow[data-session]')].every(r => r.dataset.session.includes('fault-e'))",
         "the filter to keep only matching sessions")
    press(d, "\ue00c")  # Escape: leave the filter
    press(d, "\ue00c")  # Escape: clear it
    wait(d, f"document.querySelectorAll('.srow[data-session]').length === {len(names)}", "the filter to clear")
    press(d, "j")
    target = d.execute_script("return document.querySelector('.srow.cursor').dataset.session")
    press(d, "\ue007")  # Enter
    wait(d, "location.hash === arguments[0] && document.querySelector('.runhead h1')?.textContent === arguments[1]",
         "enter to open the session under the cursor", 30, "#/s/" + target, target)
    ok(f"keyboard: / filters the sessions, esc clears, j moves, enter opens {target}")


def check_runs(d, url, exp, shots):
    for s, show in exp["show"].items():
        if s == "long-run":
            continue
        go(d, url, "#/s/" + s)
        want = tree_order(show)
        got = wait(d, f"document.querySelector('.runhead h1')?.textContent === arguments[0] && "
                      f"document.querySelectorAll('.trow[data-span]').length === {len(want)} && {ROW_LABELS}",
                   f"{s}: {len(want)} span rows", 30, s)
        if got != want:
            fail(f"{s}: the span tree differs from `tapedeck show --json`", f"page: {got}", f"show: {want}")
        findings = exp["analyze"][s]["findings"]
        for f in findings:
            pinned = d.execute_script(
                "return !!document.querySelector(`.trow[data-step='${arguments[0]}'] .pin.lead[data-detector='${arguments[1]}']`)",
                str(f["steps"][0]), f["detector"])
            if not pinned:
                fail(f"{s}: finding {f['detector']} is not pinned at step {f['steps'][0]}")
        chips = d.execute_script("return [...document.querySelectorAll('.fchip')].map(c => c.dataset.detector + '@' + c.dataset.step)")
        want_chips = [f"{f['detector']}@{f['steps'][0]}" for f in findings]
        if sorted(chips) != sorted(want_chips):
            fail(f"{s}: the findings bar shows {chips}, analyze found {want_chips}")
        no_sideways(d, f"run {s}")
    ok(f"Run: the span tree of `show` for each of {len(exp['show']) - 1} sessions, in tree order; "
       f"every finding of `analyze` pinned at its first step")

    # Parallel tool calls: the two tool calls of one decision overlap on the time axis.
    go(d, url, "#/s/parallel-tools/step/2")
    wait(d, "document.querySelector('.step[data-step=\"2\"]')", "parallel-tools step 2 in the panel")
    bars = d.execute_script(
        "return [...document.querySelectorAll('.trow[data-role=\"tool\"]')].slice(0, 2).map(r => {"
        " const b = r.querySelector('.bar').getBoundingClientRect(); return [b.left, b.right]; })")
    if len(bars) != 2 or not (bars[0][0] < bars[1][1] and bars[1][0] < bars[0][1]):
        fail("parallel-tools: the two tool calls of the first decision do not overlap on the waterfall", bars)
    ok("Run: the two tool calls one LLM answer asked for run side by side on the waterfall")
    shot(d, shots, "run")

    # Walk back: step 3 of fault-empty (the LLM call that got the empty answer).
    go(d, url, "#/s/fault-empty/step/3")
    wait(d, "document.querySelector('.step[data-step=\"3\"]')", "fault-empty step 3 in the panel")
    lit = d.execute_script("return [...document.querySelectorAll('.trow.in-direct')].map(r => r.dataset.step).sort()")
    if lit != ["1", "2"]:
        fail("fault-empty: walking back from step 3 should light steps 1 and 2", lit)
    links = d.execute_script("return [...document.querySelectorAll('.walk .steplink')].map(a => a.dataset.step)")
    if sorted(links) != ["1", "2"]:
        fail("fault-empty step 3: the panel's walk-back links are", links)
    # What flowed: the id of step 1's tool call, and step 2's empty answer.
    flows = d.execute_script("return Object.fromEntries([...document.querySelectorAll('.walk li[data-step]')]"
                             ".map(li => [li.dataset.step, [li.dataset.link, li.querySelector('.flow')?.textContent ?? null]]))")
    call_ids = [c["id"] for c in exp["show_calls"]["fault-empty"]]
    if flows.get("1", [None])[0] != "tool_result" or flows["1"][1] not in call_ids:
        fail("fault-empty step 3: step 1 should flow in as the result of its tool call, by id", flows, call_ids)
    if flows.get("2") != ["tool_output", "[]"]:
        fail("fault-empty step 3: step 2 should flow in as the tool's answer, []", flows)
    d.execute_script("document.querySelector('.walk').scrollIntoView()")
    shot(d, shots, "walk-back")
    press(d, "w")
    wait(d, "location.hash.endsWith('/step/2') && document.querySelector('.step[data-step=\"2\"]')",
         "w to walk back to step 2")
    ok(f"walk back: step 3 lights steps 1 and 2 and names what flowed (tool call {flows['1'][1]}, the answer []); w goes to step 2")

    # Conversation: the step panel renders the chat as messages.
    go(d, url, "#/s/fault-empty/step/3")
    wait(d, "document.querySelector('.step[data-step=\"3\"]')", "step 3 again")
    d.execute_script("document.querySelector('.tabs button[data-tab=conversation]').click()")
    roles = wait(d, "[...document.querySelectorAll('.conversation .msg .who')].map(e => e.firstChild.textContent)",
                 "the conversation")
    for r in ("system", "user", "assistant", "tool"):
        if r not in roles:
            fail(f"the conversation has no {r} message", roles)
    if not d.execute_script("return document.querySelector('.conversation .toolcall') && document.querySelector('.conversation .toolresult')"):
        fail("the conversation shows no tool call or tool result")
    ok(f"step panel: the chat as a conversation ({', '.join(roles)})")
    no_sideways(d, "run with the conversation open")
    shot(d, shots, "conversation")

    # A streamed call: chunks with offsets, time to first token, redacted headers.
    go(d, url, "#/s/e2e-openai-stream/step/1")
    wait(d, "document.querySelector('.step[data-step=\"1\"]')", "the streamed step")
    if not d.execute_script("return document.querySelector('.trow[data-step=\"1\"] .ttft')"):
        fail("the streamed LLM call's bar has no time-to-first-token mark")
    d.execute_script("document.querySelector('.tabs button[data-tab=stream]').click()")
    offsets = wait(d, "[...document.querySelectorAll('table.chunks tbody tr')].map(r => Number(r.children[2].textContent.replace(/,/g, '')))",
                   "the stream's chunks")
    if len(offsets) < 2 or offsets != sorted(offsets) or offsets[0] != 0:
        fail("the chunks' offsets do not start at 0 and rise", offsets)
    d.execute_script("document.querySelector('.tabs button[data-tab=headers]').click()")
    red = wait(d, "[...document.querySelectorAll('table.headers tr')].filter(r => r.querySelector('.redacted')).map(r => r.firstChild.textContent)",
               "a redacted header")
    if "authorization" not in red:
        fail("authorization is not shown as redacted", red)
    ok(f"step panel: {len(offsets)} stream chunks with rising offsets, time to first token on the bar, {', '.join(red)} shown as redacted")
    d.execute_script("document.querySelector('.tabs button[data-tab=overview]').click()")


def check_diff(d, url, exp, shots):
    for (a, b), rep in exp["diff"].items():
        go(d, url, f"#/diff/{a}/{b}")
        first = rep["first_divergence"]
        if first is None:
            wait(d, "document.querySelector('.divergence.same')", f"{a} vs {b}: no divergence")
            continue
        row = wait(d, "(() => { const r = document.querySelector('.drow.first'); if (!r) return null;"
                      " const s = r.querySelectorAll('.side'); return [s[0].querySelector('.stepno')?.textContent || null,"
                      " s[1].querySelector('.stepno')?.textContent || null, r.dataset.relation]; })()",
                   f"{a} vs {b}: the first divergence row")
        want = ["#" + str(first["step_a"]) if first["step_a"] is not None else None,
                "#" + str(first["step_b"]) if first["step_b"] is not None else None]
        if row[:2] != want:
            fail(f"{a} vs {b}: the first divergence is marked at {row[:2]}, `tapedeck diff` says {want}")
        banner = d.execute_script("return document.querySelector('.divergence').textContent")
        if first["reason"] not in banner:
            fail(f"{a} vs {b}: the banner does not give the reason", banner, first["reason"])
        paths = wait(d, "[...document.querySelectorAll('table.changes td.path')].map(e => e.textContent)",
                     f"{a} vs {b}: the first divergence's diff, path by path")
        for c in first["request_diff"] + first["response_diff"]:
            if c["path"] not in paths:
                fail(f"{a} vs {b}: path {c['path']} of `tapedeck diff` is not in the panel", paths)
        no_sideways(d, f"diff {a} {b}")
        ok(f"Diff {a} ⇄ {b}: first divergence at A {want[0]}, B {want[1]} ({row[2]}), "
           f"{len(first['request_diff']) + len(first['response_diff'])} paths as `tapedeck diff` gives them")
    shot(d, shots, "diff")
    # Keyboard on the diff: j (or k at the last row) then enter opens another row.
    before = d.execute_script("return location.hash")
    at_end = d.execute_script("const r = [...document.querySelectorAll('.drow[data-row]')];"
                              " return r.length && r[r.length - 1].classList.contains('cursor')")
    press(d, "k" if at_end else "j")
    press(d, "\ue007")
    wait(d, "location.hash !== arguments[0] && /\\/row\\/\\d+$/.test(location.hash) && document.querySelector('.drow.selected')",
         "enter to open another diff row", 30, before)
    ok("keyboard: j and enter move through the diff's rows, the URL addresses the row")


XSS_NEEDLES = ["<script>window.__xss", "<img src=x onerror="]


def check_xss(d, url, shots):
    go(d, url, "#/s/xss/step/1")
    wait(d, "document.querySelector('.step[data-step=\"1\"]')", "the xss step")
    seen = []
    for tab in ("response", "request", "headers"):
        d.execute_script(f"document.querySelector('.tabs button[data-tab={tab}]').click()")
        text = wait(d, "document.querySelector('.tabbody').textContent", f"the {tab} tab")
        seen.append(text)
        state = d.execute_script("return [typeof window.__xss, document.querySelectorAll('img').length,"
                                 " document.querySelectorAll('script').length]")
        if state != ["undefined", 0, 1]:
            fail(f"xss: after opening the {tab} tab: window.__xss is {state[0]}, {state[1]} img elements, "
                 f"{state[2]} script elements (expected undefined, 0, 1)")
    joined = "\n".join(seen)
    for n in XSS_NEEDLES:
        if n not in joined:
            fail(f"xss: the recorded text {n!r} is not shown as text", joined[:400])
    d.execute_script("document.querySelector('.tabs button[data-tab=response]').click()")
    shot(d, shots, "xss")
    ok("xss: recorded <script> and <img onerror> payloads show as text in the body and header views; no script ran, no img was made")


def check_big(d, url, exp, shots):
    spans = len(exp["show"]["long-run"]["spans"])
    # A fresh page load, as a user opening a link to the run.
    d.get("about:blank")
    d.get(url + "#/s/long-run")
    t = wait(d, "document.querySelector('.trow[data-step]') ? performance.now() : null",
             "the first screen of long-run", 120)
    rows = d.execute_script("return document.querySelectorAll('.trow').length")
    print(f"       long-run: {spans} spans; first screen {t:.0f} ms after navigation; {rows} rows in the DOM",
          file=sys.stderr)
    if rows > 300:
        fail(f"long-run: {rows} rows in the DOM for {spans} spans: the list is not virtualized")
    fetched = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/steps/'))")
    if fetched:
        fail("long-run: bodies were fetched before any step was opened", fetched[:5])
    d.execute_script("const b = document.querySelector('.run .vbox'); b.scrollTop = b.scrollHeight;")
    last = max(s["step"] for s in exp["show"]["long-run"]["spans"] if s["step"] is not None)
    wait(d, f"document.querySelector('.trow[data-step=\"{last}\"]')", f"step {last} after scrolling to the end")
    press(d, "z")
    time.sleep(0.3)
    shot(d, shots, "long-run")
    press(d, "z")
    ok(f"10,000 steps: first screen in {t:.0f} ms, {rows} of {spans} rows in the DOM, no body fetched up front, "
       f"scrolls to step {last}")
    return t


def check_theme(d, url, shots):
    go(d, url, "#/s/parallel-tools/step/3")
    wait(d, "document.querySelector('.step[data-step=\"3\"]')", "parallel-tools step 3")
    before = d.execute_script("return document.documentElement.dataset.theme")
    press(d, "t")
    after = d.execute_script("return document.documentElement.dataset.theme")
    if {before, after} != {"light", "dark"}:
        fail(f"t does not switch the theme ({before} -> {after})")
    bg = d.execute_script("return getComputedStyle(document.body).backgroundColor")
    shot(d, shots, "run-" + after)
    press(d, "t")
    bg2 = d.execute_script("return getComputedStyle(document.body).backgroundColor")
    if bg == bg2:
        fail("the two themes have the same background", bg)
    ok(f"theme: t switches {before} ⇄ {after} (background {bg2} ⇄ {bg})")


def pages(args):
    exp = {"sessions": load(os.path.join(args.expect, "sessions.json")),
           "cluster": load(os.path.join(args.expect, "cluster.json")),
           "show": {}, "analyze": {}, "diff": {}}
    for s in exp["sessions"]:
        exp["show"][s] = load(os.path.join(args.expect, f"show-{s}.json"))
        exp["analyze"][s] = load(os.path.join(args.expect, f"analyze-{s}.json"))
    for pair in args.diff:
        a, b = pair.split(":")
        exp["diff"][(a, b)] = load(os.path.join(args.expect, f"diff-{a}-{b}.json"))
    exp["show_calls"] = {s: tool_calls(exp["show"][s]) for s in exp["show"]}
    d = browser(args.chromium, args.chromedriver)
    try:
        url = enter(d, args.url)
        # The API's refusal of the clean URL without the link is an expected console error.
        d.get_log("browser")
        check_sessions(d, url, exp, args.shots)
        check_runs(d, url, exp, args.shots)
        check_diff(d, url, exp, args.shots)
        check_xss(d, url, args.shots)
        check_theme(d, url, args.shots)
        check_big(d, url, exp, args.shots)
        errors = browser_errors(d)
        if errors:
            fail("the browser console reported problems", *errors)
        ok("no error or warning in the browser console")
    finally:
        d.quit()
    if args.opener:
        check_opener(args, url)


def tool_calls(show):
    """The tool calls of `show --json`'s spans (their ids), in span order."""
    out = []
    for sp in show["spans"]:
        a = sp.get("attributes", {})
        cid = a.get("gen_ai.tool.call.id")
        if cid:
            out.append({"id": cid, "step": sp["step"]})
    return out


def only(args):
    d = browser(args.chromium, args.chromedriver)
    try:
        url = enter(d, args.url)
        go(d, url, "#/")
        shown = wait(d, "[...document.querySelectorAll('.srow[data-session]')].map(r => r.dataset.session)",
                     "the replay daemon's Sessions page")
        if shown != [args.session]:
            fail(f"the replay daemon's viewer lists {shown}, not only {args.session}")
        go(d, url, "#/s/" + args.session)
        wait(d, "document.querySelector('.runhead h1')?.textContent === arguments[0] && document.querySelector('.trow[data-step]')",
             f"the run of {args.session}", 30, args.session)
        shot(d, args.shots, "replay-only")
        go(d, url, "#/s/" + args.other)
        err = wait(d, "document.querySelector('#main p.error')?.textContent", f"the refusal of {args.other}")
        if "only" not in err:
            fail(f"opening {args.other} on the replay daemon's viewer says {err!r}")
        ok(f"replay daemon: its viewer lists {args.session} alone and refuses {args.other} ({err[:60]}...)")
    finally:
        d.quit()


def live(args):
    d = browser(args.chromium, args.chromedriver)
    try:
        url = enter(d, args.url)
        d.get(url + "#/s/" + args.session)
        wait(d, "document.querySelector('.trow[data-step=\"1\"]') && document.querySelector('#live.on')",
             "the recorded session and a connected live stream")
        d.execute_script("window.__marker = 'this page'")
        before = d.execute_script("return document.querySelectorAll('.trow[data-step]').length")
        for n in range(2, 2 + args.count):
            r = subprocess.run(args.exchange, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                fail(f"the exchange command failed ({r.returncode})", r.stderr[-400:])
            wait(d, f"document.querySelector('.trow[data-step=\"{n}\"]')", f"step {n} to appear live", 30)
        if d.execute_script("return window.__marker") != "this page":
            fail("the page was reloaded: live updates must not reload it")
        after = d.execute_script("return document.querySelectorAll('.trow[data-step]').length")
        shot(d, args.shots, "live")
        ok(f"live: {args.count} exchanges recorded by the daemon appeared on the open page without a reload "
           f"({before} -> {after} steps)")
        d.execute_script("location.hash = '#/'")
        wait(d, f"document.querySelector(`.srow[data-session='{args.session}'] .num`)?.textContent === '{1 + args.count}'",
             "the Sessions page to count the live session's events")
        r = subprocess.run(args.exchange, capture_output=True, text=True, timeout=60)
        wait(d, f"document.querySelector(`.srow[data-session='{args.session}'] .num`)?.textContent === '{2 + args.count}'",
             "the Sessions page to update live")
        ok("live: the Sessions page updates its event count as exchanges arrive")
    finally:
        d.quit()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["pages", "live", "only"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--shots", required=True)
    ap.add_argument("--expect")
    ap.add_argument("--diff", action="append", default=[], help="A:B, with diff-A-B.json in --expect")
    ap.add_argument("--session")
    ap.add_argument("--other", help="only: a session of the store the replay daemon must refuse")
    ap.add_argument("--opener", help="pages: the viewer.html page `tapedeck ui --open` hands a browser")
    ap.add_argument("--count", type=int, default=2)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    ap.add_argument("--exchange", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    try:
        {"pages": pages, "live": live, "only": only}[args.mode](args)
    except Failed as e:
        print(f"  FAIL {e}", file=sys.stderr)
        return 1
    print(f"ui_check {args.mode}: {CHECKS} checks passed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
