"""Time to first embedding in a fresh process: ``python -m zoo.loadprobe HOME NAME ARTIFACT``.

Prints JSON {"ready_s", "import_s", "peak_rss_mb"}; the clock starts before zoo is imported.
"""

import time

_START = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402


def peak_rss_mb() -> float:
    """This process's high-water RSS. Not ru_maxrss: Linux carries that across fork+exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    home, name, artifact = sys.argv[1], sys.argv[2], sys.argv[3]
    import zoo

    imported = time.perf_counter() - _START
    m = zoo.load(name, artifact=artifact, home=home, cache=False)
    if getattr(m, "kind", "embedding") == "reranker":  # its first score: one query with one document
        m.rerank("warm up the runtime", ["with one short document"])
    else:
        m.embed(["warm up the runtime with one short text"])
    ready = time.perf_counter() - _START
    print(json.dumps({"ready_s": ready, "import_s": imported, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main()
