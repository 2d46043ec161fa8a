// Inputs of zoo's models, prepared in the browser exactly as the cards' input_spec describes.
// Each function names the Python it mirrors; tests/test_site.py checks the outputs against onnxruntime-python
// fed by that Python.

// RGBA pixels -> one grey byte per pixel, as PIL's Image.convert("L"): L = (R*299 + G*587 + B*114) / 1000.
export function toGrey(rgba, count) {
  const grey = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    grey[i] = Math.floor((r * 299 + g * 587 + b * 114 + 500) / 1000);
  }
  return grey;
}

// zoo.augment.classification.tta_views on one (C, H, W) uint8 image: the image, then with "shift" the image
// moved by one pixel up, down, left and right (zero fill), then with "flip" the mirror image of every view so far.
export function ttaViews(img, channels, height, width, kinds) {
  for (const k of kinds) {
    if (k !== "flip" && k !== "shift") throw new Error(`unknown test-time augmentation "${k}" in the card`);
  }
  const views = [img];
  if (kinds.includes("shift")) {
    for (const [dy, dx] of [[-1, 0], [1, 0], [0, -1], [0, 1]]) {
      const v = new Uint8Array(img.length);
      for (let c = 0; c < channels; c++) {
        for (let y = 0; y < height; y++) {
          const sy = y + dy;
          if (sy < 0 || sy >= height) continue;
          for (let x = 0; x < width; x++) {
            const sx = x + dx;
            if (sx >= 0 && sx < width) v[(c * height + y) * width + x] = img[(c * height + sy) * width + sx];
          }
        }
      }
      views.push(v);
    }
  }
  if (kinds.includes("flip")) {
    for (const view of views.slice()) {
      const v = new Uint8Array(view.length);
      for (let row = 0; row < channels * height; row++) {
        for (let x = 0; x < width; x++) v[row * width + x] = view[row * width + width - 1 - x];
      }
      views.push(v);
    }
  }
  return views;
}

// zoo.augment.ClassificationAugment in evaluation at the image's own size: y = (x / 255 - mean[c]) / std[c],
// for a batch of (C, H, W) uint8 views -> one float32 (B, C, H, W) array.
export function normalise(views, spec) {
  const [height, width] = spec.size, channels = spec.channels;
  const plane = height * width, n = channels * plane;
  const out = new Float32Array(views.length * n);
  views.forEach((v, b) => {
    for (let c = 0; c < channels; c++) {
      const mean = Math.fround(spec.mean[c]), std = Math.fround(spec.std[c]);
      for (let i = 0; i < plane; i++) {
        const x = Math.fround(v[c * plane + i] / 255);
        out[b * n + c * plane + i] = Math.fround(Math.fround(x - mean) / std);
      }
    }
  });
  return out;
}

// Softmax of each row of (B, K) logits, averaged over the rows (the views): zoo's TTA probabilities.
export function meanSoftmax(logits, batch, classes) {
  const mean = new Float64Array(classes);
  for (let b = 0; b < batch; b++) {
    const row = logits.subarray(b * classes, (b + 1) * classes);
    const top = Math.max(...row);
    const e = Array.from(row, (v) => Math.exp(v - top));
    const sum = e.reduce((a, v) => a + v, 0);
    e.forEach((v, k) => { mean[k] += v / sum / batch; });
  }
  return Array.from(mean);
}

// RGBA pixels -> float32 (1, 3, H, W) in [0, 1]: patchcore's input ("(B, 3, H, W) float in [0, 1]").
export function toUnitCHW(rgba, height, width) {
  const plane = height * width;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) out[c * plane + i] = rgba[4 * i + c] / 255;
  }
  return out;
}

// matplotlib's "jet" colour map at level t in [0, 1] -> [r, g, b] in [0, 1].
export function jet(t) {
  const f = (x) => Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - x)));
  return [f(3), f(2), f(1)];
}

// zoo.tasks.anomaly_detection.overlay: the image blended half and half with jet(map / (2 * threshold)),
// the outline of map > threshold in white. rgba is changed in place.
export function overlay(rgba, amap, threshold, height, width) {
  const inside = (y, x) => y >= 0 && y < height && x >= 0 && x < width && amap[y * width + x] > threshold;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      const level = threshold > 0 ? Math.min(1, Math.max(0, amap[i] / (2 * threshold))) : 0;
      const heat = jet(level);
      let edge = false;
      if (inside(y, x)) {
        for (let dy = -1; dy <= 1 && !edge; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            const yy = y + dy, xx = x + dx;
            if (yy >= 0 && yy < height && xx >= 0 && xx < width && !inside(yy, xx)) { edge = true; break; }
          }
        }
      }
      for (let c = 0; c < 3; c++) {
        rgba[4 * i + c] = edge ? 255 : Math.round(255 * (0.5 * rgba[4 * i + c] / 255 + 0.5 * heat[c]));
      }
    }
  }
}
