"""Core figures (prints, never asserts):

- `import zoo` vs `import torch` alone (fresh interpreters, median of N); zoo should add < 20%;
- which heavy modules `import zoo` pulls in (none of torch_geometric, gymnasium, kornia, timm);
- zoo.create(<smallest published tag>, pretrained=True): cold (fresh process) and warm (again, same process).

    python tests/benchmarks/bench_core.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys


def _time_in_fresh_process(code: str, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", f"import time; t=time.perf_counter(); {code}; "
                              "print(time.perf_counter()-t)"], capture_output=True, text=True, check=True)
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    t_torch = _time_in_fresh_process("import torch", a.repeats)
    t_zoo = _time_in_fresh_process("import torch, zoo", a.repeats)
    t_zoo_list = _time_in_fresh_process("import torch, zoo; zoo.list_models()", a.repeats)
    heavy = subprocess.run([sys.executable, "-c", "import sys, zoo; print([m for m in ('torch', 'torch_geometric', "
                            "'gymnasium', 'kornia', 'timm') if m in sys.modules])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    print(f"import torch                 {t_torch * 1000:8.1f} ms (median of {a.repeats} fresh processes)")
    print(f"import torch, zoo            {t_zoo * 1000:8.1f} ms  -> zoo adds {100 * (t_zoo / t_torch - 1):.1f}%")
    print(f"... + zoo.list_models()      {t_zoo_list * 1000:8.1f} ms  (imports every family module)")
    print(f"modules loaded by `import zoo` alone: {heavy}")

    import zoo
    from zoo import weights as W

    tags = zoo.list_pretrained()
    if not tags:
        print("no published weights yet: create(pretrained=True) not measured")
        return
    smallest = min(tags, key=lambda t: W.get_card(t)["files"][W.WEIGHTS_FILE]["size"])
    cold = _time_in_fresh_process(f"import zoo; zoo.create({smallest!r}, pretrained=True)", a.repeats)
    code = (f"import zoo; zoo.create({smallest!r}, pretrained=True); import time; t0=time.perf_counter(); "
            f"zoo.create({smallest!r}, pretrained=True); t=t0")
    warm = _time_in_fresh_process(code, a.repeats)
    print(f"create({smallest!r}, pretrained=True): cold {cold * 1000:.1f} ms (incl. import), warm {warm * 1000:.1f} ms")


if __name__ == "__main__":
    main()
