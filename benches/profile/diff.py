import os, re, sys, subprocess
OUT = os.environ.get("OUT", "/tmp/perf")
# diff.py TAG [self|incl] N : top functions by (3000-run − 1000-run)/2000
tag, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load(f):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", f"--inclusive={'yes' if mode=='incl' else 'no'}", f], capture_output=True, text=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)", line)
        if m:
            d[m.group(2)] = int(m.group(1).replace(",", ""))
    return d
a = load(f"{OUT}/cg-{tag}-1000.out"); b = load(f"{OUT}/cg-{tag}-3000.out")
rows = sorted(((b.get(k, 0) - a.get(k, 0)) / 2000, k) for k in set(a) | set(b))
for v, k in sorted(rows, reverse=True)[:n]:
    print(f"{v:8.0f}  {k[:150]}")
