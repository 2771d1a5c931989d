"""Answers shown in the order the person acted: the page sends an ordered event only once the
answer to the one before it has been shown.

The server runs the session's events one at a time and in order (``Wiring.on``), but Gradio's page
handles the answers of events in flight at the same time, each in its own asynchronous loop that
awaits while it applies an answer (a choice list, a visibility change). An older answer can then be
applied after a newer one: four quick N presses ended with the header naming 000003.png while
the server had opened 000004.png (measured: 1 run in 5 under load; the status line and the header
showed the images in the order 4, 2, 4, 3, 2, 3). Gradio has no trigger mode that queues events
in order in the page (``"multiple"`` sends at once, ``"always_last"`` drops presses), so:

* ``WAIT``, the event's ``js`` (Gradio awaits it before it sends the event, with the inputs read
  at the press): each press waits until every earlier ordered event's answer has been applied;
* ``RELEASE``, run by ``.then`` after the answer (or ``.failure`` after an error), lets the next
  one go; the answers arrive in press order, so the first one waiting is released.

The page's load event is not held back (it reads the page's URL, which the place written back
afterwards may replace): it holds the queue's first place from the start.

Presses waiting in the page are not sent yet: leaving the page (a reload, closing the tab) while
any wait asks first (the browser's "leave site?" dialog), as strokes not applied do.

A press still waiting after ``STALLED_MS`` puts a red line on top of the page saying how many
actions wait and are not saved (the studio may have stopped: Gradio's page then sends nothing
more), until they are sent. A press whose predecessor never answers goes after ``LIMIT_MS`` anyway (a lost answer must not
stop the page). What is drawn at once in the browser (the canvas's accept marks, the next image
drawn ahead) does not wait: only the request does. It also waits for the next frame (at most
100 ms): Gradio's work of sending an event (snapshots of the page's state, loading marks on every
output: 50-100 ms on the 2-core machine) would otherwise run before that frame and hold back what
the press drew (measured on 1280x960 with 50 instances, p50: next image drawn ahead 83 -> 18 ms,
a threshold press 74 -> 35 ms); each request leaves about one frame later.
"""
from __future__ import annotations

from typing import Any

LIMIT_MS = 120_000
STALLED_MS = 10_000

# the page's load event holds the first place (it is sent at once: it reads the page's URL, which
# the place written back after it may replace)
# and leaving the page (reload, closing the tab) while presses wait unsent asks first
_QUEUE = ("(window.__studioOrder ??= (() => { let release; "
          "const tail = new Promise((resolve) => { release = resolve; }); "
          "window.addEventListener('beforeunload', (e) => { "
          "if (window.__studioOrder.open.length > 1) { e.preventDefault(); e.returnValue = ''; } }); "
          "return {tail, open: [release]}; })())")

# sent after the next frame (or 100 ms, a hidden page draws no frames): what a press draws at once
# in the browser is shown before Gradio's work of sending the event takes the page's thread
_AFTER_FRAME = ("const afterFrame = () => new Promise((resolve) => { "
                "requestAnimationFrame(() => setTimeout(resolve, 0)); setTimeout(resolve, 100); });")

# a press still waiting after STALLED_MS (the server stopped, or the connection is gone) is said
# on the page: it is not saved, and the person should not believe it is
_STALLED = ("const stalled = () => { const n = window.__studioOrder.open.length - 1; "
            "let note = document.getElementById('order-stalled'); "
            "if (n <= 0) { if (note) note.remove(); return; } "
            "if (!note) { note = document.createElement('div'); note.id = 'order-stalled'; note.setAttribute('role', 'alert'); "
            "note.style.cssText = 'position:fixed;top:0;left:50%;transform:translateX(-50%);z-index:1000;"
            "background:#b91c1c;color:#fff;padding:6px 14px;border-radius:0 0 6px 6px;font-size:14px'; "
            "document.body.appendChild(note); } "
            "note.textContent = `\u26a0 ${n} action${n > 1 ? 's' : ''} waiting for the server ${n > 1 ? 'are' : 'is'} "
            "not saved: if the studio stopped, start it again, reload this page and redo ${n > 1 ? 'them' : 'it'}`; };")

WAIT = f"""(...inputs) => {{
  {_AFTER_FRAME}
  {_STALLED}
  const q = {_QUEUE};
  const before = q.tail;
  let release;
  q.tail = new Promise((resolve) => {{ release = resolve; }});
  q.open.push(() => {{ release(); setTimeout(stalled, 0); }});
  setTimeout(stalled, {STALLED_MS});
  const limit = new Promise((resolve) => setTimeout(resolve, {LIMIT_MS}));
  return Promise.race([before, limit]).then(afterFrame).then(() => inputs);
}}"""

RELEASE = f"""() => {{
  const q = {_QUEUE};
  const release = q.open.shift();
  if (release) release();
  return [];
}}"""


def ordered(dependency: Any) -> Any:
    """Chain the release after ``dependency`` (an event registered with ``js=WAIT``) and return
    it, so that further ``.then`` steps chain on the event as before."""
    dependency.then(None, None, None, js=RELEASE, api_visibility="private", queue=False)
    dependency.failure(None, None, None, js=RELEASE, api_visibility="private", queue=False)
    return dependency
