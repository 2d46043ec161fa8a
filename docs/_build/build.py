"""Build zoo's docs site: a strict mkdocs build, then the demo's assets (what `make docs` runs).

    python docs/_build/build.py                 # -> site/
    python docs/_build/build.py --site-dir DIR  # elsewhere (tests/test_site.py builds into a temporary folder)

The demo's assets are written into the built site's demo/assets/ (nothing generated lands in docs/):

- ort/       onnxruntime-web's WebAssembly runtime, copied from docs/demo/node_modules (`npm ci` in docs/demo;
             the .wasm and .mjs must lie next to ort.wasm.min.js): no CDN, the site works offline.
- models/    cnn.fashion_mnist, patchcore.brick and dqn.cartpole exported by `zoo.deploy.export` (ONNX,
             parity-checked against PyTorch there); kept in build/demo-onnx/ while the weights' sha256 and the
             code that exports them (zoo/deploy/, the family's model module) are unchanged.
- samples/   ten Fashion-MNIST test images (the first of each class), brick crops with each planted defect and
             one without (zoo.families.patchcore.data.texture_sample), as PNG.
- demo.json  for each demo: the ONNX file, the card's input_spec, labels and thresholds, the samples.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "docs" / "demo"
ORT_DIST = DEMO / "node_modules" / "onnxruntime-web" / "dist"
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
EXPORTS = ROOT / "build" / "demo-onnx"
CNN, PATCHCORE, DQN = "cnn.fashion_mnist", "patchcore.brick", "dqn.cartpole"
CARTPOLE_SEED = 0


def copy_runtime(out: Path) -> None:
    """onnxruntime-web's browser runtime (WebAssembly build) from the npm package into `out`."""
    missing = [f for f in ORT_FILES if not (ORT_DIST / f).is_file()]
    if missing:
        raise SystemExit(f"docs: onnxruntime-web is not installed ({ORT_DIST / missing[0]} is missing): "
                         f"run `npm ci` in {DEMO} (make docs does)")
    out.mkdir(parents=True, exist_ok=True)
    for f in ORT_FILES:
        shutil.copy2(ORT_DIST / f, out / f)


def _export_key(tag: str) -> str:
    """What an export depends on: the weights' sha256 and the source of zoo/deploy/ and the family's model."""
    from zoo import weights

    card = weights.get_card(tag)
    h = hashlib.sha256(card["files"]["model.safetensors"]["sha256"].encode())
    for path in [*sorted((ROOT / "zoo" / "deploy").glob("*.py")), ROOT / "zoo" / "families" / card["family"] / "model.py"]:
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def export_onnx(tag: str, cache: Path = EXPORTS) -> Path:
    """model.onnx of `tag` (zoo.deploy.export), exported again only when what it depends on changed."""
    from zoo.deploy import export

    folder = cache / tag
    key, stamp = _export_key(tag), folder / "demo-export.key"
    if (folder / "model.onnx").is_file() and stamp.is_file() and stamp.read_text() == key:
        return folder / "model.onnx"
    print(f"docs: exporting {tag} to ONNX", flush=True)
    export(tag, "onnx", folder)
    stamp.write_text(key)
    return folder / "model.onnx"


def _save_png(array, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def cnn_samples(out: Path, labels: list[str]) -> list[dict]:
    """The first Fashion-MNIST test image of each class, as 28x28 grey PNGs."""
    from zoo.data.images import fashion_mnist

    _, test = fashion_mnist()  # the Debian package dataset-fashion-mnist, else torchvision's download
    rows = []
    for k, name in enumerate(labels):
        i = int((test.labels == k).nonzero()[0, 0])
        rel = f"samples/cnn/test{i:05d}.png"
        _save_png(test.images[i, 0].numpy(), out / rel)
        rows.append({"file": rel, "label": name, "index": i, "title": f"test image {i}: {name}"})
    return sorted(rows, key=lambda r: r["index"])


def patchcore_samples(out: Path, texture: str, size: int) -> list[dict]:
    """A crop of `texture` with each planted defect, then one without, as size x size RGB PNGs."""
    import numpy as np

    from zoo.families.patchcore import data as anomaly

    rows = []
    for kind in [*anomaly.DEFECTS, "good"]:
        image, _ = anomaly.texture_sample(texture, kind, image_size=size)
        rel = f"samples/patchcore/{texture}_{kind}.png"
        _save_png(np.round(image * 255).astype(np.uint8), out / rel)
        rows.append({"file": rel, "kind": kind,
                     "title": f"{texture}: {kind if kind != 'good' else 'no defect'}"})
    return rows


def demo_assets(out: Path) -> dict:
    """Write everything the demo page loads into `out`; returns demo.json's content."""
    from zoo import weights

    if out.exists():
        shutil.rmtree(out)
    copy_runtime(out / "ort")
    spec = {}
    for key, tag in (("cnn", CNN), ("patchcore", PATCHCORE), ("dqn", DQN)):
        card = weights.get_card(tag)
        model = out / "models" / f"{tag}.onnx"
        model.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(export_onnx(tag), model)
        spec[key] = {"tag": tag, "model": f"models/{tag}.onnx", "input_spec": card["input_spec"],
                     "labels": card.get("labels")}
    spec["cnn"]["samples"] = cnn_samples(out, spec["cnn"]["labels"])
    spec["cnn"]["default"] = 0
    pc = weights.get_card(PATCHCORE)
    if not isinstance(pc.get("threshold"), dict) or not {"image", "pixel"} <= set(pc["threshold"]):
        raise SystemExit(f"docs: the {PATCHCORE} card has no image/pixel threshold: {pc.get('threshold')}")
    spec["patchcore"]["threshold"] = {"image": pc["threshold"]["image"], "pixel": pc["threshold"]["pixel"]}
    size = pc["input_spec"]["size"]
    if len(size) != 2 or size[0] != size[1]:
        raise SystemExit(f"docs: the {PATCHCORE} card's input_spec size {size} is not square; the samples are")
    spec["patchcore"]["samples"] = patchcore_samples(out, PATCHCORE.split(".", 1)[1], int(size[0]))
    spec["patchcore"]["default"] = 0
    spec["dqn"]["seed"] = CARTPOLE_SEED
    (out / "demo.json").write_text(json.dumps(spec, indent=1))
    return spec


def build(site_dir: Path | None = None) -> Path:
    """`mkdocs build --strict` into `site_dir` (default: mkdocs.yml's site/), then the demo's assets into it."""
    site = Path(site_dir or ROOT / "site").resolve()
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
           "--site-dir", str(site)]
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    demo_assets(site / "demo" / "assets")
    return site


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))  # this checkout's zoo, whatever the environment has installed
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--site-dir", type=Path, help="where to write the site (default: site/)")
    a = ap.parse_args(argv)
    print(f"docs: site written to {build(a.site_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
