import os, re, sys, subprocess
OUT = os.environ.get("OUT", "/tmp/perf")
# callers.py TAG PATTERN: callers of the function matching PATTERN, per request (3000-run − 1000-run)/2000
tag, pat = sys.argv[1], sys.argv[2]
def load(f):
    out = subprocess.run(["callgrind_annotate", "--tree=caller", "--threshold=100", "--inclusive=yes", f], capture_output=True, text=True).stdout
    d = {}; block = []
    for line in out.splitlines():
        if not line.strip():
            block = []; continue
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(<|\*)\s+(.*)", line)
        if not m: continue
        if m.group(2) == "<":
            block.append((int(m.group(1).replace(",", "")), m.group(3)))
        elif re.search(pat, m.group(3)):
            for v, k in block:
                d[k] = d.get(k, 0) + v
            block = []
        else:
            block = []
    return d
a = load(f"{OUT}/cg-{tag}-1000.out"); b = load(f"{OUT}/cg-{tag}-3000.out")
rows = sorted((((b.get(k, 0) - a.get(k, 0)) / 2000), k) for k in set(a) | set(b))
for v, k in sorted(rows, reverse=True)[:25]:
    if v >= 5: print(f"{v:8.0f}  {k[:160]}")
