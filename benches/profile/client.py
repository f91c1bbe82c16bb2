import socket, sys
host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
tok = sys.argv[5] if len(sys.argv) > 5 else None
# "@FILE": the tokens of FILE (one per line), in turn.
toks = [l.strip() for l in open(tok[1:]) if l.strip()] if tok and tok.startswith("@") else [tok]
s = socket.create_connection((host, port))
reqs = [(f"GET {path} HTTP/1.1\r\nHost: x\r\n" + (f"Authorization: Bearer {t}\r\n" if t else "") + "\r\n").encode() for t in toks]
for i in range(n):
    s.sendall(reqs[i % len(reqs)])
    buf = b""
    while True:
        buf += s.recv(65536)
        if b"\r\n\r\n" in buf:
            head, _, body = buf.partition(b"\r\n\r\n")
            cl = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    cl = int(line.split(b":")[1])
            if len(body) >= cl:
                break
    if i == 0 and not head.startswith(b"HTTP/1.1 200"):
        print(head.decode(), file=sys.stderr); sys.exit(1)
