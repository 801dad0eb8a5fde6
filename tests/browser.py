"""A real JupyterLab and a real browser for the tests: the system Chromium driven by selenium.

``browser_or_skip()`` says why the browser tests cannot run (no chromium / chromedriver / selenium), so they
skip with a reason instead of passing silently; ``make test`` installs Debian's chromium and chromium-driver
where it can (root, apt).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = os.environ.get("FRKIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FRKIT_CHROMEDRIVER", "/usr/bin/chromedriver")
# flags a root, headless, offline Chromium needs here (its background connections are refused on this network)
CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
]


def browser_or_skip() -> str | None:
    """None when a browser test can run, else the reason it cannot."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} not found (Debian package {package}; `make test` installs it where apt is available)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def jupyterlab(root: Path, settings_dir: Path, log: Path):
    """JupyterLab serving ``root`` on a free local port; yields its base URL (token in the query)."""
    port, token = free_port(), "frkit-test"
    settings_dir.mkdir(parents=True, exist_ok=True)
    tracker = settings_dir / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True, exist_ok=True)
    # every cell attached to the page (no windowing), so that every figure can be measured; no news pop-up
    (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    news = settings_dir / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True, exist_ok=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(settings_dir),
        "JUPYTERLAB_WORKSPACES_DIR": str(settings_dir / "ws"),
    }
    env.pop("FRKIT_ROOT", None)  # the kernels must find the project root as users' kernels do
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        f"--port={port}",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.ip=127.0.0.1",
        "--LabApp.expose_app_in_browser=True",
        "--allow-root",
    ]
    with log.open("w") as out:
        lab = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if lab.poll() is not None:
                    raise RuntimeError(f"JupyterLab exited: {log.read_text()[-2000:]}") from None
                time.sleep(0.5)
        else:
            raise TimeoutError(f"JupyterLab did not answer in 120 s: {log.read_text()[-2000:]}")
        yield url, token
    finally:
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()


def wait_for(driver, script: str, timeout: float, what: str, interval: float = 0.5):
    """Poll a JavaScript expression until it returns something truthy; its value, or TimeoutError naming ``what``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


NOTEBOOK = "window.jupyterapp.shell.currentWidget"

RUN_STATE = f"""
const w = window.jupyterapp && {NOTEBOOK};
if (!w || !w.content || !w.sessionContext || !w.sessionContext.session || !w.sessionContext.session.kernel) return null;
const cells = w.content.widgets.filter(c => c.model.type === 'code');
const status = w.sessionContext.session.kernel.status;
const pending = cells.filter(c => c.model.executionCount === null || c.promptNode.textContent.includes('*')).length;
return {{status: status, pending: pending, cells: cells.length}};
"""

ERRORS = f"""
const w = {NOTEBOOK};
const out = [];
w.content.widgets.forEach((c, i) => {{
  if (c.model.type !== 'code') return;
  c.model.outputs.toJSON().forEach(o => {{
    if (o.output_type === 'error') out.push(i + ': ' + o.ename + ': ' + o.evalue);
  }});
}});
return out;
"""

FIGURES = f"""
return Array.from({NOTEBOOK}.node.querySelectorAll('.js-plotly-plot')).map(p => ({{
  height: p.getBoundingClientRect().height, svg: p.querySelectorAll('svg.main-svg').length,
  title: (p.querySelector('.gtitle') || {{textContent: ''}}).textContent}}));
"""


def run_all(driver, url: str, token: str, notebook: str, timeout: float = 300) -> dict:
    """Open ``notebook`` in JupyterLab, wait for its kernel, "Run All Cells", wait until every code cell ran."""
    driver.get(f"{url}/lab/tree/{notebook}?token={token}")
    wait_for(
        driver,
        f"return !!(window.jupyterapp && window.jupyterapp.shell && {NOTEBOOK} && {NOTEBOOK}.context "
        f"&& {NOTEBOOK}.context.path === '{notebook}' "
        f"&& {NOTEBOOK}.sessionContext && {NOTEBOOK}.sessionContext.session "
        f"&& {NOTEBOOK}.sessionContext.session.kernel "
        f"&& {NOTEBOOK}.sessionContext.session.kernel.status === 'idle')",
        120,
        f"{notebook}'s kernel",
    )
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    time.sleep(1)
    state = wait_for(
        driver,
        f"const s = (function() {{ {RUN_STATE} }})(); return s && s.status === 'idle' && s.pending === 0 ? s : null",
        timeout,
        f"{notebook}: every cell run (Run All)",
    )
    time.sleep(1.5)  # let renderers finish drawing the last outputs
    return state
