// zoo's in-browser demo: three published models, exported to ONNX, run by onnxruntime-web (WebAssembly).
// Everything it loads lies next to this page (assets/ written by docs/_build/build.py): no network.
// The results are also kept in window.zooDemo, which tests/test_site.py reads.
import { meanSoftmax, normalise, overlay, toGrey, toUnitCHW, ttaViews } from "./preprocess.js";
import { CartPole, drawCartPole } from "./cartpole.js";

const ASSETS = new URL("../assets/", import.meta.url);
const demo = { errors: [], cnn: null, patchcore: null, cartpole: null };
window.zooDemo = demo;

const $ = (id) => document.getElementById(id);

function fail(where, err) {
  const msg = `${where}: ${err && err.message ? err.message : err}`;
  demo.errors.push(msg);
  console.error(msg, err);
  const box = $("demo-errors");
  if (box) {
    box.hidden = false;
    box.textContent += msg + "\n";
  }
}

// onnxruntime-web runs one inference at a time: every run goes through this queue.
let queue = Promise.resolve();
function serial(fn) {
  const next = queue.then(fn, fn);
  queue = next.catch(() => {});
  return next;
}

// An image file -> its RGBA bytes, decoded without colour management (PNG values as stored).
async function loadPixels(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot load ${url}: HTTP ${res.status}`);
  const bitmap = await createImageBitmap(await res.blob(), {
    colorSpaceConversion: "none", premultiplyAlpha: "none",
  });
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  return { rgba: ctx.getImageData(0, 0, bitmap.width, bitmap.height).data, width: bitmap.width, height: bitmap.height };
}

function thumbnails(container, samples, onPick) {
  container.innerHTML = "";
  samples.forEach((s, i) => {
    const b = document.createElement("button");
    b.className = "demo-thumb";
    b.title = s.title;
    b.dataset.index = i;
    const img = document.createElement("img");
    img.src = new URL(s.file, ASSETS).href;
    img.alt = s.title;
    b.append(img);
    b.addEventListener("click", () => onPick(i));
    container.append(b);
  });
}

function markPicked(container, index) {
  for (const b of container.children) b.classList.toggle("picked", Number(b.dataset.index) === index);
}

// ------------------------------------------------------------------ cnn.fashion_mnist
async function setupCnn(card) {
  const spec = card.input_spec;
  if (spec.channels !== 1) throw new Error(`the demo draws grey images; the card asks for ${spec.channels} channels`);
  const [height, width] = spec.size;
  const session = await ort.InferenceSession.create(new URL(card.model, ASSETS).href);
  const inputName = session.inputNames[0], outputName = session.outputNames[0];
  const pad = $("cnn-draw"), pctx = pad.getContext("2d");
  pad.width = width;
  pad.height = height;
  let drawing = new Uint8Array(height * width);
  let isDrawing = false;  // the pad shows the user's drawing (true) or a sample (false)

  async function classify(grey, source) {
    const t0 = performance.now();
    const views = ttaViews(grey, 1, height, width, spec.tta || []);
    const x = new ort.Tensor("float32", normalise(views, spec), [views.length, 1, height, width]);
    const out = await serial(() => session.run({ [inputName]: x }));
    const logits = out[outputName];
    const probs = meanSoftmax(logits.data, views.length, card.labels.length);
    const best = probs.indexOf(Math.max(...probs));
    demo.cnn = { source, probabilities: probs, label: card.labels[best], views: views.length,
      ms: performance.now() - t0 };
    $("cnn-label").textContent = card.labels[best];
    $("cnn-truth").textContent = source.label ? `(true label: ${source.label})` : "(your drawing)";
    $("cnn-views").textContent = `${views.length} view${views.length > 1 ? "s" : ""} averaged`;
    const bars = $("cnn-probs");
    bars.innerHTML = "";
    probs.forEach((p, k) => {
      const row = document.createElement("div");
      row.className = "demo-bar" + (k === best ? " best" : "");
      row.innerHTML = `<span class="name"></span><span class="bar"><span style="width:${(100 * p).toFixed(1)}%">` +
        `</span></span><span class="value">${p.toFixed(4)}</span>`;
      row.querySelector(".name").textContent = card.labels[k];
      bars.append(row);
    });
  }

  function showOnPad(grey) {
    const img = pctx.createImageData(width, height);
    grey.forEach((v, i) => img.data.set([v, v, v, 255], 4 * i));
    pctx.putImageData(img, 0, 0);
  }

  async function pick(i) {
    const s = card.samples[i];
    const { rgba, width: w, height: h } = await loadPixels(new URL(s.file, ASSETS).href);
    if (w !== width || h !== height) throw new Error(`${s.file} is ${w}x${h}; the card expects ${width}x${height}`);
    drawing = toGrey(rgba, w * h);
    isDrawing = false;
    showOnPad(drawing);
    markPicked($("cnn-samples"), i);
    await classify(drawing, { sample: s.file, label: s.label });
  }

  // Drawing: a soft round brush painted straight into the 28x28 grid the model reads (no resampling), along
  // the segment between successive pointer positions. A stroke on a sample starts a fresh drawing.
  let down = false, last = null;
  const dab = (px, py) => {
    for (let y = Math.floor(py - 2); y <= py + 2; y++) {
      for (let x = Math.floor(px - 2); x <= px + 2; x++) {
        if (x < 0 || y < 0 || x >= width || y >= height) continue;
        const d = Math.hypot(x + 0.5 - px, y + 0.5 - py);
        const v = Math.round(255 * Math.min(1, Math.max(0, 1.6 - d / 1.4)));
        drawing[y * width + x] = Math.max(drawing[y * width + x], v);
      }
    }
  };
  const paint = (e) => {
    const r = pad.getBoundingClientRect();
    const p = [((e.clientX - r.left) / r.width) * width, ((e.clientY - r.top) / r.height) * height];
    const from = last || p, steps = Math.max(1, Math.ceil(2 * Math.hypot(p[0] - from[0], p[1] - from[1])));
    for (let i = 1; i <= steps; i++) {
      dab(from[0] + ((p[0] - from[0]) * i) / steps, from[1] + ((p[1] - from[1]) * i) / steps);
    }
    last = p;
    showOnPad(drawing);
  };
  pad.addEventListener("pointerdown", (e) => {
    if (!isDrawing) drawing = new Uint8Array(height * width);
    down = true;
    isDrawing = true;
    last = null;
    markPicked($("cnn-samples"), -1);
    paint(e);
  });
  pad.addEventListener("pointermove", (e) => { if (down) paint(e); });
  const lift = () => {
    if (!down) return;
    down = false;
    classify(drawing, { sample: null, label: null }).catch((err) => fail("cnn", err));
  };
  pad.addEventListener("pointerup", lift);
  pad.addEventListener("pointerleave", lift);
  $("cnn-clear").addEventListener("click", () => {
    drawing = new Uint8Array(height * width);
    isDrawing = true;
    showOnPad(drawing);
  });
  thumbnails($("cnn-samples"), card.samples, (i) => pick(i).catch((err) => fail("cnn", err)));
  demo.pickCnn = pick;
  await pick(card.default);
}

// ------------------------------------------------------------------ patchcore.brick
async function setupPatchcore(card) {
  const [height, width] = card.input_spec.size;
  const session = await ort.InferenceSession.create(new URL(card.model, ASSETS).href);
  const inputName = session.inputNames[0];
  const view = $("pc-view"), vctx = view.getContext("2d");
  view.width = width;
  view.height = height;

  async function pick(i) {
    const s = card.samples[i];
    const { rgba, width: w, height: h } = await loadPixels(new URL(s.file, ASSETS).href);
    if (w !== width || h !== height) {
      throw new Error(`${s.file} is ${w}x${h}; the exported graph takes ${width}x${height}`);
    }
    markPicked($("pc-samples"), i);
    const t0 = performance.now();
    const x = new ort.Tensor("float32", toUnitCHW(rgba, h, w), [1, 3, h, w]);
    const out = await serial(() => session.run({ [inputName]: x }));
    // the graph's outputs: the image score (B,) and the anomaly map (B, H, W), told apart by rank
    const tensors = session.outputNames.map((n) => out[n]);
    const score = tensors.find((t) => t.dims.length === 1);
    const amap = tensors.find((t) => t.dims.length === 3);
    if (!score || !amap) throw new Error(`patchcore graph outputs ${session.outputNames} are not (score, map)`);
    const value = score.data[0];
    const anomalous = value > card.threshold.image;
    demo.patchcore = { source: { sample: s.file, kind: s.kind }, score: value, threshold: card.threshold.image,
      verdict: card.labels[anomalous ? 1 : 0], ms: performance.now() - t0 };
    const pixels = new Uint8ClampedArray(rgba);
    overlay(pixels, amap.data, card.threshold.pixel, h, w);
    vctx.putImageData(new ImageData(pixels, w, h), 0, 0);
    $("pc-score").textContent = value.toFixed(3);
    $("pc-threshold").textContent = card.threshold.image.toFixed(3);
    const verdict = $("pc-verdict");
    verdict.textContent = card.labels[anomalous ? 1 : 0];
    verdict.className = anomalous ? "bad" : "good";
    $("pc-kind").textContent = s.kind === "good" ? "no defect planted" : `planted defect: ${s.kind}`;
  }

  thumbnails($("pc-samples"), card.samples, (i) => pick(i).catch((err) => fail("patchcore", err)));
  demo.pickPatchcore = pick;
  await pick(card.default);
}

// ------------------------------------------------------------------ dqn.cartpole
async function setupCartpole(card) {
  const session = await ort.InferenceSession.create(new URL(card.model, ASSETS).href);
  const inputName = session.inputNames[0], outputName = session.outputNames[0];
  const spec = card.input_spec, n = spec.obs_shape[0];
  // the card's preprocessing: the raw float32 observation vector of CartPole-v1, nothing else
  const raw = (spec.preprocessing || []).every((p) => p.startsWith("none"));
  if (spec.env !== "CartPole-v1" || spec.obs_dtype !== "float32" || n !== 4 || !raw) {
    throw new Error("the demo steps CartPole-v1 with raw float32 observations; the card asks for " +
      JSON.stringify(spec));
  }
  const ctx = $("cp-canvas").getContext("2d");
  let episode = 0;

  async function greedy(obs) {
    const out = await serial(() => session.run({ [inputName]: new ort.Tensor("float32", obs, [1, n]) }));
    const q = out[outputName].data;
    let best = 0;
    for (let a = 1; a < q.length; a++) if (q[a] > q[best]) best = a;  // argmax, first on ties (as torch)
    return best;
  }

  async function run(seed) {
    const mine = ++episode;
    const env = new CartPole(seed);
    let obs = env.observation();
    demo.cartpole = { seed, length: 0, done: false, terminated: false };
    $("cp-seed").textContent = seed;
    drawCartPole(ctx, env.state);
    while (!env.done && mine === episode) {
      const step = env.step(await greedy(obs));
      obs = step.observation;
      demo.cartpole = { seed, length: env.steps, done: env.done, terminated: step.terminated };
      $("cp-length").textContent = env.steps;
      drawCartPole(ctx, env.state);
      await new Promise((r) => requestAnimationFrame(r));  // one step a frame: watchable, about real time
    }
    if (mine === episode) {
      $("cp-status").textContent = env.steps >= 500 ? "balanced for the full 500 steps (truncated)" :
        "the pole fell or the cart left the track";
    }
  }

  let seed = card.seed;
  $("cp-new").addEventListener("click", () => { seed += 1; run(seed).catch((err) => fail("cartpole", err)); });
  demo.runCartpole = run;
  await run(seed);
}

async function main() {
  if (location.protocol === "file:") {
    throw new Error("browsers do not run WebAssembly models from file:// pages: serve the site (make demo, or any " +
      "static server, e.g. python -m http.server -d site) and open it over http://");
  }
  if (typeof ort === "undefined") throw new Error("onnxruntime-web (assets/ort/ort.wasm.min.js) did not load");
  ort.env.wasm.wasmPaths = new URL("ort/", ASSETS).href;
  ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which a plain static server does not give
  const res = await fetch(new URL("demo.json", ASSETS));
  if (!res.ok) throw new Error(`demo.json: HTTP ${res.status} (build the site with make docs)`);
  const cards = await res.json();
  // one after the other: the pictures come first, then the pole balances for as long as it can
  await setupCnn(cards.cnn).catch((err) => fail("cnn", err));
  await setupPatchcore(cards.patchcore).catch((err) => fail("patchcore", err));
  await setupCartpole(cards.dqn).catch((err) => fail("cartpole", err));
}

main().catch((err) => fail("demo", err));
