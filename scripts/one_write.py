"""Redis's floor for a benchmark (issue #19): the entry bytes of a `simulator bench-redis`
reference written once, in 256 KiB writes, to a new file (give one in Redis's data
directory), the page-cache write every AOF append makes; prints, as JSON, the bytes, the
reference's events, and this writer's own CPU (user + system, getrusage) in all and per event.
Used by scripts/bench and scripts/bench-redis-persistence (docs/BENCHMARKS.md, "Where Redis's
CPU goes").

    python3 scripts/one_write.py REFERENCE_JSON NEW_FILE
"""

import json
import os
import resource
import sys


def main() -> None:
    reference_path, target = sys.argv[1], sys.argv[2]
    ref = json.load(open(reference_path))
    total = ref["entries"] * ref["entry_bytes"]
    chunk = b"\0" * 262144
    before = resource.getrusage(resource.RUSAGE_SELF)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    left = total
    while left > 0:
        left -= os.write(fd, chunk[: min(left, len(chunk))])
    os.close(fd)
    after = resource.getrusage(resource.RUSAGE_SELF)
    os.unlink(target)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"bytes": total, "events": ref["events"], "cpu_seconds": round(cpu, 3),
                      "cpu_microseconds_per_event": round(cpu / ref["events"] * 1e6, 3)}))


if __name__ == "__main__":
    main()
