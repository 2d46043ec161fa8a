"""The docs site and its in-browser demo, in a real headless Chromium (issue 23).

Builds the site (docs/_build/build.py: demo assets + strict mkdocs build) into a temporary folder, serves it
from 127.0.0.1, opens the demo page with Debian's chromium through selenium + chromium-driver, and checks
that what the browser computes with onnxruntime-web equals onnxruntime-python on the same sample and model
file: cnn.fashion_mnist probabilities and patchcore.brick's score within 1e-4, on the default sample and on
one the test picks, and that dqn.cartpole's greedy policy balances the pole for >= 475 steps.
Screenshots and parity.json (the measured differences) go to out/test_site/ (ZOO_TEST_OUT overrides).
`make test` installs chromium, chromium-driver and onnxruntime-web first (docs/_build/install_browser.sh).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-4
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1600")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load("zoo_docs_build", ROOT / "docs" / "_build" / "build.py")
hooks = _load("zoo_docs_hooks", ROOT / "docs" / "_build" / "hooks.py")


def test_results_table_comes_from_the_cards():
    cards = {"cnn.x": {"family": "cnn", "task": "classification", "datasets": ["d"],
                       "metrics": {"accuracy": 0.91234, "loss": 0.3},
                       "expect": {"metric": "accuracy", "value": 0.9, "tolerance": 0.01, "mode": "max"},
                       "training": {"wall_seconds": 600, "hardware": "2 CPU"},
                       "files": {"model.safetensors": {"size": 2_000_000}}},
             "dqn.y": {"family": "dqn", "metrics": {"return_mean": 500.0}}}
    table = hooks.results_table(cards).splitlines()
    assert len(table) == 4
    assert table[0] == "| tag | task | data | metric | value | target | other metrics | training | file |"
    assert table[2] == ("| [cnn.x](models/cnn.md) | classification | d | accuracy | 0.9123 | >= 0.9 ± 0.01 | "
                        "loss 0.3 | 10.0 min, 2 CPU | 2.00 MB |")
    assert "| return_mean | 500 |" in table[3]
    assert hooks.results_table(cards, "gcn") == ""
    assert hooks.results_table(cards, "cnn").splitlines()[2] == ("| cnn.x | accuracy | 0.9123 | >= 0.9 ± 0.01 | "
                                                                 "10.0 min, 2 CPU | 2.00 MB |")


def test_readme_links_become_site_links():
    text = "[cnn](docs/models/cnn.md) ![p](docs/models/img/a.png) [make](Makefile) [web](https://x.org) [a](#b)"
    assert hooks.readme_page(text) == "[cnn](models/cnn.md) ![p](models/img/a.png) make [web](https://x.org) [a](#b)"


# ---------------------------------------------------------------------------------------- the browser test
def _need_browser() -> tuple[str, str]:
    pytest.importorskip("selenium", reason="selenium is in the dev/docs extras")
    pytest.importorskip("mkdocs", reason="mkdocs is in the dev/docs extras")
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev/deploy extras")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver: `make test` installs them "
                    "(docs/_build/install_browser.sh)")
    if not (build.ORT_DIST / build.ORT_FILES[0]).is_file():
        pytest.skip(f"needs onnxruntime-web: run `npm ci` in {build.DEMO} (make test does)")
    return chromium, driver


@pytest.fixture(scope="module")
def served_site(tmp_path_factory):
    """The built site on http://127.0.0.1:PORT (a thread of this process; stopped after the module)."""
    _need_browser()
    site = build.build(tmp_path_factory.mktemp("site") / "site")
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".wasm": "application/wasm", ".onnx": "application/octet-stream"}

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for failure messages
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    yield driver
    driver.quit()


def _screens() -> Path:
    out = Path(os.environ.get("ZOO_TEST_OUT") or ROOT / "out" / "test_site")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _shoot(driver, element_id: str, up: int, path: Path) -> None:
    """Screenshot of the element `up` levels above #element_id, scrolled into view first."""
    el = driver.find_element("id", element_id)
    for _ in range(up):
        el = el.find_element("xpath", "..")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
    el.screenshot(str(path))


def _wait(driver, script: str, timeout: float, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: d.execute_script(script))
    except TimeoutException:
        state = driver.execute_script("return JSON.stringify(window.zooDemo || null)")
        log = [e["message"] for e in driver.get_log("browser")]
        raise AssertionError(f"the demo did not {what} within {timeout} s; window.zooDemo={state}; "
                             f"console: {log[-5:]}") from None


def _session(site: Path, demo: dict, key: str):
    import onnxruntime as ort

    return ort.InferenceSession(str(site / "demo" / "assets" / demo[key]["model"]), providers=["CPUExecutionProvider"])


def cnn_reference(site: Path, demo: dict, sample: str) -> np.ndarray:
    """The card's probabilities of a sample by zoo's own preprocessing (ImageFolder-style read, TTA views,
    ClassificationAugment in evaluation) and onnxruntime-python on the site's model file."""
    import torch

    from zoo.augment import ClassificationAugment
    from zoo.augment.classification import tta_views
    from zoo.data.images import open_images

    spec = demo["cnn"]["input_spec"]
    images = open_images([site / "demo" / "assets" / sample], spec["size"], spec["channels"])
    transform = ClassificationAugment.from_spec(spec, train=False)
    sess = _session(site, demo, "cnn")
    name = sess.get_inputs()[0].name
    with torch.no_grad():
        views = [transform(v).numpy() for v in tta_views(images, spec.get("tta") or [])]
    logits = [torch.from_numpy(sess.run(None, {name: v.astype(np.float32)})[0]) for v in views]
    return (sum(x.softmax(1) for x in logits) / len(logits))[0].double().numpy()


def patchcore_reference(site: Path, demo: dict, sample: str) -> float:
    from PIL import Image

    x = np.asarray(Image.open(site / "demo" / "assets" / sample).convert("RGB"), dtype=np.float32) / 255
    sess = _session(site, demo, "patchcore")
    outs = sess.run(None, {sess.get_inputs()[0].name: x.transpose(2, 0, 1)[None].copy()})
    score = next(o for o in outs if o.ndim == 1)
    return float(score[0])


def gym_cartpole(start: list[float], actions: list[int]) -> np.ndarray:
    """gymnasium CartPole-v1's states after each action, from `start`."""
    import gymnasium

    env = gymnasium.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    env.state = np.array(start, dtype=np.float64)
    states = []
    for a in actions:
        env.step(a)
        states.append(np.array(env.state, dtype=np.float64))
    return np.stack(states)


def test_site_and_demo_in_headless_chromium(served_site, browser):
    """One test (one site build per worker): the pages, then the three demos."""
    site, url = served_site
    for page in ("index.html", "results.html", "models/cnn.html", "reference/api.html", "search/search_index.json"):
        assert (site / page).is_file(), page
    browser.get(f"{url}/results.html")
    text = browser.find_element("tag name", "article").text
    assert all(tag in text for tag in hooks.load_cards()), "every published tag is in the results table"
    browser.get(f"{url}/models/patchcore.html")
    assert "patchcore.brick" in browser.find_element("tag name", "article").text

    demo = json.loads((site / "demo" / "assets" / "demo.json").read_text())
    shots = _screens()
    browser.get(f"{url}/demo/index.html")
    _wait(browser, "return window.zooDemo && window.zooDemo.errors.length > 0 || "
                   "(window.zooDemo && window.zooDemo.cnn && window.zooDemo.patchcore)", 90, "run cnn and patchcore")
    state = browser.execute_script("return window.zooDemo")
    assert state["errors"] == [], state["errors"]
    _shoot(browser, "cnn-draw", 2, shots / "cnn.png")
    _shoot(browser, "pc-view", 1, shots / "patchcore.png")

    # the default samples, then one the user picks (the fourth test image, the second defect)
    checks = [(state["cnn"], state["patchcore"])]
    picked = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all([window.zooDemo.pickCnn(3), window.zooDemo.pickPatchcore(1)])"
        ".then(() => done([window.zooDemo.cnn, window.zooDemo.patchcore]), (e) => done(String(e)));")
    assert isinstance(picked, list), picked
    checks.append(tuple(picked))
    report = []
    for cnn, pc in checks:
        want = cnn_reference(site, demo, cnn["source"]["sample"])
        got = np.array(cnn["probabilities"])
        want_score = patchcore_reference(site, demo, pc["source"]["sample"])
        report.append({"cnn_sample": cnn["source"]["sample"], "cnn_max_abs_diff": float(np.abs(got - want).max()),
                       "cnn_browser_ms": cnn["ms"], "patchcore_sample": pc["source"]["sample"],
                       "patchcore_score": pc["score"], "patchcore_abs_diff": abs(pc["score"] - want_score),
                       "patchcore_browser_ms": pc["ms"]})
        (shots / "parity.json").write_text(json.dumps(report, indent=1))
        assert got.shape == want.shape and abs(got.sum() - 1) < 1e-5
        assert np.abs(got - want).max() <= TOL, (cnn["source"], got, want)
        assert cnn["label"] == demo["cnn"]["labels"][int(want.argmax())]
        assert abs(pc["score"] - want_score) <= TOL, (pc["source"], pc["score"], want_score)
        expected = demo["patchcore"]["labels"][int(want_score > demo["patchcore"]["threshold"]["image"])]
        assert pc["verdict"] == expected
    assert checks[0][0]["source"]["label"] == state["cnn"]["label"]  # the default test image is classified right
    assert checks[0][1]["verdict"] == "anomalous"                      # and the default defect is found

    # a drawing: a stroke across the pad is classified (probabilities of the drawn image, no sample)
    from selenium.webdriver.common.action_chains import ActionChains

    pad = browser.find_element("id", "cnn-draw")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", pad)
    ActionChains(browser).move_to_element_with_offset(pad, -40, -60).click_and_hold() \
        .move_by_offset(40, 60).move_by_offset(40, 40).release().perform()
    _wait(browser, "return window.zooDemo.cnn.source.sample === null", 30, "classify the drawing")
    drawn = browser.execute_script("return window.zooDemo.cnn")
    assert abs(sum(drawn["probabilities"]) - 1) < 1e-5 and drawn["label"] in demo["cnn"]["labels"]
    _shoot(browser, "cnn-draw", 2, shots / "cnn_drawing.png")

    # the JavaScript CartPole steps as gymnasium's CartPole-v1 does, from the same state with the same actions
    start, actions = [0.01, -0.02, 0.03, 0.04], [int(a) for a in np.random.default_rng(0).integers(0, 2, 200)]
    js = browser.execute_async_script(
        "const [start, actions, done] = arguments;"
        "import(new URL('js/cartpole.js', location.href).href).then((m) => {"
        "  const env = new m.CartPole(0); env.state = start.slice(); const out = [];"
        "  for (const a of actions) {"
        "    const r = env.step(a); out.push([...env.state, r.terminated]); if (env.done) break; }"
        "  done(out); }, (e) => done(String(e)));", start, actions)
    assert isinstance(js, list), js
    np.testing.assert_allclose([row[:4] for row in js], gym_cartpole(start, actions[:len(js)]), rtol=0, atol=1e-12)
    assert js[-1][4] and not any(row[4] for row in js[:-1]), "terminates on the same step as gymnasium"

    # the pole: one step a frame, up to 500 steps
    _wait(browser, "return window.zooDemo.cartpole && window.zooDemo.cartpole.done", 90, "finish the episode")
    cartpole = browser.execute_script("return window.zooDemo.cartpole")
    _shoot(browser, "cp-canvas", 1, shots / "cartpole.png")
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shots / "demo_page.png"))
    assert cartpole["length"] >= 475, cartpole
    assert browser.execute_script("return window.zooDemo.errors") == []
