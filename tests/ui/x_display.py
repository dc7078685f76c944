"""A real X display for keyboard tests: Xvfb on a free display number with openbox as its window manager (Xvfb
alone has no window manager, so focus and key presses never arrive), driven with xdotool.

The tools are Debian packages (xvfb, openbox, xdotool; scripts/test installs them): a missing one FAILS the test,
never skips it, so a CI image without them cannot pass silently."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TOOLS = {"Xvfb": "xvfb", "openbox": "openbox", "xdotool": "xdotool", "xprop": "x11-utils"}


def require_tools() -> None:
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"real-window tests need {', '.join(missing)} (apt-get install {' '.join(missing)}; "
                    "scripts/test installs them)")


def poll(condition: Callable[[], object], timeout: float, what: str, every: float = 0.1):
    """The condition's first true value, checked every ``every`` s until ``timeout``; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class Display:
    def __init__(self, name: str) -> None:
        self.name = name
        self.env = {**os.environ, "DISPLAY": name, "QT_QPA_PLATFORM": "xcb"}
        self.env.pop("WAYLAND_DISPLAY", None)

    def run(self, *args: str, timeout: float = 15) -> str:
        out = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout.strip()

    def xdotool(self, *args: str, timeout: float = 15) -> str:
        return self.run("xdotool", *args, timeout=timeout)

    def window_named(self, name: str, timeout: float = 30) -> str:
        """The id of a visible window whose title contains ``name``."""
        def find() -> str | None:
            out = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", name], env=self.env,
                                 capture_output=True, text=True, timeout=10)
            ids = out.stdout.split()
            return ids[0] if ids else None

        return poll(find, timeout, f"a window named {name!r}", every=0.2)

    def wm_running(self) -> bool:
        out = subprocess.run(["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], env=self.env, capture_output=True,
                             text=True, timeout=10)
        return out.returncode == 0 and "window id" in out.stdout


@contextmanager
def x_display(tmp: Path, size: str = "1280x720x24") -> Iterator[Display]:
    require_tools()
    read, write = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", size, "-nolisten", "tcp",
                             "-noreset"], pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    procs = [xvfb]
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()  # Xvfb writes its display number here once it accepts clients
        assert number.isdigit(), "Xvfb did not start"
        display = Display(f":{number}")
        home = tmp / "wm-home"
        home.mkdir(exist_ok=True)
        wm = subprocess.Popen(["openbox", "--sm-disable"], env={**display.env, "HOME": str(home)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(wm)
        poll(display.wm_running, 15, "openbox to manage the display")
        yield display
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
