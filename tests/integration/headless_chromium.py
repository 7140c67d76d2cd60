"""Open a page in a real headless Chromium and report what a person would notice: console errors, uncaught
exceptions, failed loads, images that are missing or do not decode, and every URL the page requested.

Chromium is driven over the DevTools protocol (a websocket, here aiohttp's client): Runtime, Log, Page and
Network events are enabled before navigating, so nothing the page does while loading is missed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0", "--no-first-run",
         "--disable-extensions", "--disable-background-networking"]

# Every <img>: wait for decode() (resolves once the image is decoded, rejects when it cannot be).
IMAGES_JS = """
Promise.all(Array.from(document.images).map(img => img.decode().then(() => true, () => false).then(ok => ({
  src: (img.getAttribute('src') || '').slice(0, 60), alt: img.alt, complete: img.complete,
  width: img.naturalWidth, height: img.naturalHeight, decoded: ok}))))
"""


@dataclass
class PageCheck:
    errors: list[str] = field(default_factory=list)     # console.error, uncaught exceptions, error log entries
    images: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)   # URLs the page requested (data: URLs included)

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not (i["complete"] and i["decoded"] and i["width"] > 0)]


def check_page(url: str, timeout_s: float = 60.0) -> PageCheck:
    """Load ``url`` in a fresh headless Chromium profile; the browser is stopped afterwards."""
    if CHROMIUM is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium, or `make system-deps`)")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(Path(profile), proc, timeout_s)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            targets = json.load(resp)
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        return asyncio.run(asyncio.wait_for(_drive(ws_url, url), timeout_s))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(profile: Path, proc: subprocess.Popen, timeout_s: float) -> int:
    """Chromium writes the port it chose (--remote-debugging-port=0) to DevToolsActivePort in the profile."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode} before opening DevTools")
        if marker.exists():
            lines = marker.read_text().split()
            if lines:
                return int(lines[0])
        time.sleep(0.1)
    raise TimeoutError("chromium did not open its DevTools port")


async def _drive(ws_url: str, url: str) -> PageCheck:
    import aiohttp

    out = PageCheck()
    ids = itertools.count(1)
    loaded = False

    def on_event(msg: dict[str, Any]) -> None:
        nonlocal loaded
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            out.errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            out.errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            out.requests.append(p["request"]["url"])
        elif method == "Page.loadEventFired":
            loaded = True

    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        async def call(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
            i = next(ids)
            await ws.send_json({"id": i, "method": method, "params": params or {}})
            while True:
                msg = await ws.receive_json()
                if msg.get("id") == i:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg["result"]
                on_event(msg)

        for domain in ("Runtime", "Log", "Page", "Network"):
            await call(f"{domain}.enable")
        nav = await call("Page.navigate", {"url": url})
        if nav.get("errorText"):
            out.errors.append(f"navigation: {nav['errorText']}")
            return out
        while not loaded:
            on_event(await ws.receive_json())
        res = await call("Runtime.evaluate", {"expression": IMAGES_JS, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"image check failed: {res['exceptionDetails']}")
        out.images = res["result"]["value"]
        await call("Runtime.evaluate", {"expression": "1"})  # lets events queued during the check arrive
    return out
