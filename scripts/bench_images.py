"""Images per second through zoo against sentence-transformers, on the tiny random CLIP of the tests.

    .venv/bin/python scripts/bench_images.py [--images 512] [--size 224] [--rounds 3]

No CLIP weights install offline here, so this measures the tiny CLIP the tests build (2-layer
towers of width 32, 32x32 model input): the figures show zoo's overhead on the image path (header
checks, digests, the vector cache) against sentence-transformers' own ``encode``, not what a real
CLIP runs at. Inputs are generated offline: noise, gradients, shapes and rendered text, as PNG
bytes of ``--size`` pixels a side. Each way runs in a fresh process (median of ``--rounds``);
peak RSS is that process's VmHWM. zoo runs with its cache off, and once more with every image
already cached.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = r"""
import io, json, statistics, sys, time
import numpy as np
from PIL import Image
from pathlib import Path
way, folder, images_dir, rounds, home = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
blobs = [p.read_bytes() for p in sorted(Path(images_dir).glob("*.png"))]
if way == "sentence-transformers":
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(folder, device="cpu")
    run = lambda: st.encode([Image.open(io.BytesIO(b)).convert("RGB") for b in blobs], batch_size=32)
else:
    import zoo
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home
    reg = Registry(resolve_home(home))
    if not reg.list_models():
        reg.register("clip", folder)
    m = zoo.load("clip", registry=reg, cache=way == "zoo, all cached")
    if way == "zoo, all cached":
        m.embed_images(blobs)
    run = lambda: m.embed_images(blobs, batch_size=32)
run()
times = []
for _ in range(rounds):
    t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"images_s": len(blobs) / statistics.median(times), "peak_rss_mb": rss}))
"""


def _pictures(n: int, size: int, out: Path) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.RandomState(0)
    for i in range(n):
        kind = i % 4
        if kind == 0:
            img = Image.fromarray((rng.rand(size, size, 3) * 255).astype("uint8"))
        elif kind == 1:
            ramp = np.linspace(0, 255, size, dtype=np.uint8)
            img = Image.fromarray(np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)),
                                            np.full((size, size), i % 256, np.uint8)], axis=2))
        else:
            img = Image.new("RGB", (size, size), tuple(int(c) for c in rng.randint(0, 255, 3)))
            draw = ImageDraw.Draw(img)
            if kind == 2:
                draw.ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=(255, 255, 255))
            else:
                draw.text((8, size // 2), f"zoo image {i}", fill=(0, 0, 0))
        img.save(out / f"{i:05d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from conftest import build_tiny_clip

    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        work = Path(tmp)
        folder = build_tiny_clip(work / "tiny-clip")
        (work / "images").mkdir()
        _pictures(args.images, args.size, work / "images")
        rows = []
        for way in ("sentence-transformers", "zoo, cache off", "zoo, all cached"):
            done = subprocess.run([sys.executable, "-c", RUN, way, str(folder), str(work / "images"),
                                   str(args.rounds), str(work / f"home-{len(rows)}")],
                                  capture_output=True, text=True, check=True)
            rows.append((way, json.loads(done.stdout.strip().splitlines()[-1])))
    ref = rows[0][1]["images_s"]
    from zoo.core.hardware import detect

    hw = detect()
    print(f"CPU: {hw.cpu_model} ({hw.physical_cores} cores); {args.images} PNG images of {args.size}x{args.size}, tiny random CLIP\n")
    print("| way | images/s | vs sentence-transformers | peak RSS MB |\n|---|---|---|---|")
    for way, r in rows:
        print(f"| {way} | {r['images_s']:.0f} | {r['images_s'] / ref:.2f}x | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
