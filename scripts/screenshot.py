"""Screenshot a page in headless Chromium through the DevTools protocol, after it settles.

    python scripts/screenshot.py URL OUT.png SECONDS [JAVASCRIPT ...]

How docs/trace.png was taken: ``vizviewer --server_only --port 9311
profiles/trace.json`` serves the offline Perfetto UI, then
``python scripts/screenshot.py 'http://localhost:9311/#!/?url=http://localhost:9311/localtrace'
docs/trace.png 50 JS...`` loads the trace, waits, runs each snippet (dismiss the
cookie notice, expand the tracks, fold the sidebar) and saves the screen.
Chromium comes from the distribution (``apt-get install chromium``); the
DevTools connection uses tornado, which dask.distributed brings. Chromium's
own ``--screenshot`` takes the picture before the viewer has loaded the trace.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tornado.websocket import websocket_connect

PORT = 9333


def page_socket() -> str:
    """The DevTools address of the browser's page, once it answers."""
    for _ in range(50):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/json") as answer:
                pages = json.load(answer)
            return str(next(page["webSocketDebuggerUrl"] for page in pages if page["type"] == "page"))
        except (OSError, StopIteration):
            time.sleep(0.2)
    raise SystemExit("screenshot: Chromium did not answer")


async def shoot(url: str, out: Path, wait_s: float, scripts: list[str]) -> None:
    socket = await websocket_connect(page_socket(), max_message_size=1 << 28)
    ids = itertools.count(1)

    async def call(method: str, **params: Any) -> dict[str, Any]:
        number = next(ids)
        await socket.write_message(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(await socket.read_message() or "{}")
            if message.get("id") == number:
                return dict(message.get("result", {}))

    await call("Page.enable")
    await call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False)
    await call("Page.navigate", url=url)
    await asyncio.sleep(wait_s)
    for script in scripts:
        await call("Runtime.evaluate", expression=script)
        await asyncio.sleep(2)
    shot = await call("Page.captureScreenshot", format="png")
    out.write_bytes(base64.b64decode(shot["data"]))


def main() -> int:
    url, out, wait_s, *scripts = sys.argv[1:]
    browser = subprocess.Popen(
        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1600,1000", f"--remote-debugging-port={PORT}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        asyncio.run(shoot(url, Path(out), float(wait_s), scripts))
    finally:
        browser.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
