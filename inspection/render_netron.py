#!/usr/bin/env python3
"""Open a netron page in headless Chromium, read the drawn graph, save a screenshot.

netron draws the graph as SVG with JavaScript after it has fetched and parsed
the model, so this polls the live page (bounded by --deadline) until node
boxes appear, then reads the op type, input and output labels from the DOM:
what a person would see, not what the model file says.

    .venv/bin/python tools/render_netron.py http://127.0.0.1:8090/ \\
        --screenshot docs/netron_graph.png --expect Gemm Sigmoid

Exits 1 when the graph does not appear in time or an expected op is missing.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from headless_chromium import BrowserError, HeadlessChromium

# Labels as netron draws them: one box per node, its op type first; inputs and
# outputs as their own boxes. body.alert / body.notification mean netron shows
# a message (an error, an update request) and waits for a person.
READ_GRAPH = """(() => {
  const first = (selector) => Array.from(document.querySelectorAll(selector))
      .map((box) => { const text = box.querySelector('text'); return text ? text.textContent : ''; });
  const body = document.body ? document.body.classList : null;  // null while loading
  const text = document.getElementById('message-text');
  const origin = document.getElementById('origin');
  return {
    // Left the welcome/spinner state, and the layout has placed the graph.
    drawn: Boolean(body && body.contains('default') && origin && origin.getAttribute('transform')),
    ops: first('#canvas g.graph-node .node-item-type'),
    inputs: first('#canvas g.graph-item-input'),
    outputs: first('#canvas g.graph-item-output'),
    message: (body && text && (body.contains('alert') || body.contains('notification')))
        ? text.innerText : null,
  };
})()"""

GRAPH_BOX = """(() => {
  const box = document.getElementById('origin').getBoundingClientRect();
  return {x: box.x, y: box.y, width: box.width, height: box.height};
})()"""


class RenderError(RuntimeError):
    pass


def consent_already_given(page, url):
    # netron asks for cookie consent on first open and draws nothing until it
    # is answered; a fresh profile would always ask. Outside hosts do not
    # resolve in this browser, so nothing is reported anywhere.
    if not url.startswith("http"):
        return
    page.send("Network.setCookie", {"name": "consent", "value": str(int(time.time() * 1000)),
                                    "url": url})


def render(url, screenshot=None, deadline=60, margin=24, scale=2):
    """The graph netron draws at url: {"ops": [...], "inputs": [...], "outputs": [...]}.

    With screenshot, also saves a PNG of the graph (cropped to it, plus margin).
    """
    with HeadlessChromium() as browser:
        page = browser.open_page(width=1200, height=900)
        consent_already_given(page, url)
        page.navigate(url)
        graph = page.wait_for(f"(() => {{ const g = {READ_GRAPH}; "
                              "return ((g.drawn && g.ops.length) || g.message !== null) ? g : null; })()",
                              deadline)
        if graph is None:
            raise RenderError(f"netron drew no graph at {url} within {deadline}s")
        if graph["message"] is not None:
            hint = ""
            if "update" in graph["message"].lower():
                hint = (" (netron's page refuses to work 180 days after its build date;"
                        " pin a newer netron in requirements-dev.txt)")
            raise RenderError(f"netron shows a message instead of the graph: "
                              f"{graph['message']!r}{hint}")
        if screenshot:
            box = page.evaluate(GRAPH_BOX)
            clip = {"x": max(box["x"] - margin, 0), "y": max(box["y"] - margin, 0),
                    "width": box["width"] + 2 * margin, "height": box["height"] + 2 * margin,
                    "scale": scale}
            Path(screenshot).write_bytes(page.screenshot(clip))
        return {key: graph[key] for key in ("ops", "inputs", "outputs")}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="a netron page, e.g. http://127.0.0.1:8090/")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the graph here")
    parser.add_argument("--expect", nargs="*", default=[], metavar="OP",
                        help="op types that must be drawn (e.g. Gemm Sigmoid)")
    parser.add_argument("--deadline", type=float, default=60,
                        help="seconds to wait for the graph (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        graph = render(args.url, args.screenshot, args.deadline)
    except (RenderError, BrowserError) as error:
        print(f"render_netron.py: {error}", file=sys.stderr)
        return 1
    print(json.dumps(graph))
    missing = [op for op in args.expect if op not in graph["ops"]]
    if missing:
        print(f"render_netron.py: not drawn: {', '.join(missing)}", file=sys.stderr)
        return 1
    if args.screenshot:
        print(f"screenshot: {args.screenshot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
