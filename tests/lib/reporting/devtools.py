"""A headless chromium driven over the DevTools protocol, to do what a person does with the report:
click, move between pages, download. It listens on 127.0.0.1 on a port of its own choosing (read
from its profile's ``DevToolsActivePort``) and is stopped with its helpers by its process (group) id."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STARTUP_SECONDS = 60.0


class DevTools:
    def __init__(self, profile: Path, downloads: Path) -> None:
        self.downloads = downloads
        downloads.mkdir(parents=True, exist_ok=True)
        (profile / "DevToolsActivePort").unlink(missing_ok=True)  # an earlier browser's, on this profile
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its renderers and helpers share its process group, stopped with it
        )
        try:
            port, path = self._listening(profile / "DevToolsActivePort")
            self.socket = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=STARTUP_SECONDS)
        except BaseException:
            self.close()
            raise
        self.calls = 0
        self.problems: list[str] = []  # console messages and uncaught exceptions of every page
        self.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads), eventsEnabled=True)

    def _listening(self, active_port: Path) -> tuple[str, str]:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            lines = active_port.read_text().splitlines() if active_port.exists() else []
            if len(lines) == 2:
                return lines[0], lines[1]
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def call(self, method: str, session: str | None = None, **params: object) -> dict:
        self.calls += 1
        message: dict[str, object] = {"id": self.calls, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(self.socket.recv(timeout=STARTUP_SECONDS))
            if reply.get("id") == self.calls:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._event(reply)

    def _event(self, event: dict) -> None:
        params = event.get("params", {})
        if event.get("method") == "Runtime.consoleAPICalled":
            self.problems.append(" ".join(str(arg.get("value")) for arg in params.get("args", [])))
        elif event.get("method") == "Runtime.exceptionThrown":
            self.problems.append(json.dumps(params.get("exceptionDetails")))

    def open(self, page: Path) -> str:
        """A new tab showing ``page`` once its scripts ran; returns its session."""
        target = self.call("Target.createTarget", url=page.as_uri())["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Runtime.enable", session)
        deadline = time.monotonic() + STARTUP_SECONDS
        while self.evaluate(session, "document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{page} did not finish loading")
            time.sleep(0.05)
        return session

    def evaluate(self, session: str, expression: str) -> object:
        result = self.call("Runtime.evaluate", session, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def downloaded(self, name: str) -> Path:
        """The file the browser saved as ``name``, once it is complete."""
        path = self.downloads / name
        deadline = time.monotonic() + STARTUP_SECONDS
        while not path.exists() or any(self.downloads.glob("*.crdownload")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no download {name}: {sorted(p.name for p in self.downloads.iterdir())}")
            time.sleep(0.05)
        return path

    def close(self) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()
        for stop in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, stop)
            try:
                self.process.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # helpers still exiting
            os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> DevTools:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
