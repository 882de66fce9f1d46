"""Open a netron page in headless Chromium, read the drawn graph, save a screenshot.

netron draws the graph as SVG with JavaScript after it has fetched and parsed
the model, so this polls the live page (bounded by --deadline) until node
boxes appear, then reads the op type, input and output labels from the DOM:
what a person would see, not what the model file says.

    .venv/bin/python -m inspection.render_netron http://127.0.0.1:8090/ \\
        --screenshot docs/netron_graph.png --expect Gemm Sigmoid

Exits 1 when the graph does not appear in time or an expected op is missing.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from inspection.headless_chromium import BrowserError, headless_page
from fizbuz.errors import FizbuzError

# What netron's page looks like once it has drawn a graph (left the welcome /
# spinner state, the layout has placed the graph, a node box exists), or once
# it shows a message (an error, an update request) and waits for a person.
# Read with Playwright's selector engine, which runs in its own isolated world:
# netron's page replaces window.eval, which Playwright's page.evaluate needs.
NODE_TYPES = "#canvas g.graph-node .node-item-type"
DRAWN = f"body.default:has(#origin[transform]):has({NODE_TYPES})"
MESSAGE = "body.alert #message-text, body.notification #message-text"


class RenderError(FizbuzError):
    pass


def consent_already_given(session, url):
    # netron asks for cookie consent on first open and draws nothing until it
    # is answered; a fresh profile would always ask. Outside hosts do not
    # resolve in this browser, so nothing is reported anywhere.
    if url.startswith("http"):
        session.page.context.add_cookies([{"name": "consent", "value": str(int(time.time() * 1000)), "url": url}])


def first_text(box):
    texts = box.locator("text")
    return texts.first.text_content() if texts.count() else ""


def labels(page, selector):
    """The first text of each box matching selector, in document order, as drawn.
    (count, text_content and inner_text run in Playwright's isolated world;
    all_text_contents would need the page's own eval.)"""
    return [first_text(box) for box in page.locator(selector).all()]


def read_graph(page):
    """Node op types in order, input and output names; message: what netron says instead, or None."""
    message = page.locator(MESSAGE)
    return {
        "ops": labels(page, NODE_TYPES),
        "inputs": labels(page, "#canvas g.graph-item-input"),
        "outputs": labels(page, "#canvas g.graph-item-output"),
        "message": message.first.inner_text() if message.count() else None,
    }


def render(url, screenshot=None, deadline=60, margin=24, scale=2):
    """The graph netron draws at url: {"ops": [...], "inputs": [...], "outputs": [...]}.

    With screenshot, also saves a PNG of the graph (cropped to it, plus margin).
    """
    with headless_page(width=1200, height=900, scale=scale) as session:
        page = session.page
        consent_already_given(session, url)
        page.goto(url, wait_until="load", timeout=deadline * 1000)
        # Waiting on the page itself is the readiness check: the graph is drawn
        # by JavaScript after the model has been fetched and parsed.
        try:
            page.wait_for_selector(f"{DRAWN}, {MESSAGE}", state="attached", timeout=deadline * 1000)
        except PlaywrightTimeout:
            raise RenderError(f"netron drew no graph at {url} within {deadline}s") from None
        graph = read_graph(page)
        if graph["message"] is not None:
            hint = ""
            if "update" in graph["message"].lower():
                hint = (
                    " (netron's page refuses to work 180 days after its build date;"
                    " pin a newer netron in requirements-dev.txt)"
                )
            raise RenderError(f"netron shows a message instead of the graph: {graph['message']!r}{hint}")
        if screenshot:
            box = page.locator("#origin").bounding_box()
            clip = {
                "x": max(box["x"] - margin, 0),
                "y": max(box["y"] - margin, 0),
                "width": box["width"] + 2 * margin,
                "height": box["height"] + 2 * margin,
            }
            page.screenshot(path=str(screenshot), clip=clip)
        return {key: graph[key] for key in ("ops", "inputs", "outputs")}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m inspection.render_netron",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="a netron page, e.g. http://127.0.0.1:8090/")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the graph here")
    parser.add_argument(
        "--expect", nargs="*", default=[], metavar="OP", help="op types that must be drawn (e.g. Gemm Sigmoid)"
    )
    parser.add_argument(
        "--deadline", type=float, default=60, help="seconds to wait for the graph (default: %(default)s)"
    )
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
