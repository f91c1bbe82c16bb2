"""A webhook receiver that verifies every delivery with the `standardwebhooks`
package (PyPI, pinned in tests/webhooks/requirements.txt), which nobody here
wrote: the independent check of portcullis's Standard Webhooks signatures.

    python receiver.py --secret NAME=whsec_... [--secret NAME=whsec_...] [--port N]

Prints one JSON line, {"port": N}, once it listens on 127.0.0.1. Every POST is
verified with each named secret on its own (`Webhook(secret).verify`, which
checks the timestamp too and accepts any of several space-separated `v1,`
signatures) and recorded; the answer is 204 when at least one secret verifies
it, 401 otherwise. GET /_log answers the records as a JSON list:
{"path", "id", "event", "signatures", "verified": [names]}. POST /_secret with
{"name", "secret"} adds a secret (one a rotation just gave out). POST /_clock
with {"offset": seconds} moves this receiver's clock (for the timestamp
check) by that much from the real one, to follow a test's manual clock.
"""

import argparse
import datetime as _datetime
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks.webhooks as swh

_lock = threading.Lock()
_log = []
_offset = [0.0]


class _Clock(_datetime.datetime):
    """`datetime` whose `now` is the real time plus the offset set by /_clock."""

    @classmethod
    def now(cls, tz=None):
        real = _datetime.datetime.now(tz)
        return real + _datetime.timedelta(seconds=_offset[0])


# The package reads the time through its module's `datetime` name.
swh.datetime = _Clock


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", action="append", default=[])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    secrets = []
    for item in args.secret:
        name, _, secret = item.partition("=")
        secrets.append((name, swh.Webhook(secret)))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def _answer(self, status, body=b""):
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path != "/_log":
                return self._answer(404)
            with _lock:
                body = json.dumps(_log).encode()
            self._answer(200, body)

        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if self.path == "/_clock":
                _offset[0] = float(json.loads(body)["offset"])
                return self._answer(204)
            if self.path == "/_secret":
                added = json.loads(body)
                with _lock:
                    secrets.append((added["name"], swh.Webhook(added["secret"])))
                return self._answer(204)
            headers = {k: v for k, v in self.headers.items()}
            verified = []
            with _lock:
                known = list(secrets)
            for name, webhook in known:
                try:
                    webhook.verify(body, headers)
                    verified.append(name)
                except swh.WebhookVerificationError:
                    pass
            try:
                event = json.loads(body).get("event")
            except ValueError:
                event = None
            record = {
                "path": self.path,
                "id": self.headers.get("webhook-id"),
                "event": event,
                "signatures": len(self.headers.get("webhook-signature", "").split()),
                "verified": verified,
            }
            with _lock:
                _log.append(record)
            self._answer(204 if verified else 401)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
