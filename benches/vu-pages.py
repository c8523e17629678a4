#!/usr/bin/env python3
"""Where a running loadrig's VUs keep their memory, page by page (lab tool, Linux, root or
the same user): for each VU's mapping of the snapshot image (`/memfd:wasm-memory-image`),
which pages the VU has copied (anonymous now, per /proc/PID/pagemap), and how each copy
differs from the image (read through /proc/PID/map_files): byte-identical (touched and
restored), or how many 32-bit words changed.

    loadrig run benches/scenarios/sleepy.js --vus 300 -d 20s -e BASE_URL=… &
    sleep 8; python3 benches/vu-pages.py $(pgrep -f 'loadrig run') [VUS_TO_DIFF [IMAGE_PAGES]]

The same works for `edge serve`'s pooled instances (each slot keeps its pages between
requests): its images are memfds, or the compiled-code cache's `.cwasm` files when the
app came from the cache (measure once the log says the app is `optimized`: the first code
maps no image); IMAGE_PAGES picks one app's image when several are served.

docs/benchmarks.md ("Where a sleeping VU's memory is, by page") has what it found.
"""
import collections
import struct
import sys

PAGE = 4096


def main():
    pid = int(sys.argv[1])
    sample = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    want = int(sys.argv[3]) if len(sys.argv) > 3 else None
    images = []
    for line in open(f"/proc/{pid}/maps"):
        parts = line.split()
        # A private writable mapping of an image: a memfd, or a cached module's file.
        if len(parts) > 5 and parts[1] == "rw-p" and (
            "memfd:wasm-memory-image" in parts[5] or parts[5].endswith(".cwasm")
        ):
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if want is None or (end - start) // PAGE == want:
                images.append((start, end, int(parts[2], 16)))
    if not images:
        sys.exit("no VU memory-image mappings in that process")
    pagemap = open(f"/proc/{pid}/pagemap", "rb")
    mem = open(f"/proc/{pid}/mem", "rb")
    npages = (images[0][1] - images[0][0]) // PAGE
    start, end, offset = images[0]
    with open(f"/proc/{pid}/map_files/{start:x}-{end:x}", "rb") as image_file:
        image_file.seek(offset)
        image = image_file.read(npages * PAGE)

    def copied(start, end):
        pagemap.seek(start // PAGE * 8)
        entries = struct.unpack(f"{(end - start) // PAGE}Q", pagemap.read((end - start) // PAGE * 8))
        # Present (bit 63) and no longer the file's page (bit 61 clear): the VU's own copy.
        return [i for i, e in enumerate(entries) if e >> 63 & 1 and not e >> 61 & 1]

    per_page = collections.Counter()
    counts = []
    same = 0
    words = collections.Counter()
    for n, (start, end, _) in enumerate(images):
        pages = copied(start, end)
        counts.append(len(pages))
        per_page.update(pages)
        if n >= sample:
            continue
        for p in pages:
            mem.seek(start + p * PAGE)
            now = mem.read(PAGE)
            was = image[p * PAGE:(p + 1) * PAGE]
            if now == was:
                same += 1
            else:
                changed = sum(1 for i in range(0, PAGE, 4) if now[i:i + 4] != was[i:i + 4])
                words[min(changed // 8 * 8, 64)] += 1
    vus = len(images)
    print(f"{vus} VUs; the image is {npages} pages; copied per VU: mean {sum(counts) / vus:.1f}, "
          f"max {max(counts)}; pages copied by at least half the VUs: "
          f"{sum(1 for c in per_page.values() if c * 2 >= vus)}")
    diffed = same + sum(words.values())
    print(f"of the copies of the first {min(sample, vus)} VUs: {same} ({100 * same / max(diffed, 1):.0f} %) "
          f"identical to the image; changed 32-bit words per other copy (bucket: pages): "
          + ", ".join(f"{k}{'+' if k == 64 else f'-{k + 7}'}: {v}" for k, v in sorted(words.items())))


if __name__ == "__main__":
    main()
