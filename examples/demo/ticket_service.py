#!/usr/bin/env python3
"""A local stand-in for an incident-ticket API, for the quickstart demo only.

HTTPS (TLS 1.3 only) on loopback with a certificate from a throw-away demo CA. It
accepts requests that carry the expected API key in X-Api-Key and keeps tickets in
memory:

  POST /api/v1/tickets               {"title", "severity"}  -> 201 {"id", "status"}
  POST /api/v1/tickets/{id}/notes    {"text"}               -> 201 {"ticket", "note"}
  GET  /api/v1/tickets/{id}                                 -> 200 the ticket

Every request is appended to a JSON Lines journal (method, path, whether the API key
matched, the body), so the demo can show what the service received without printing
the key.

usage: ticket_service.py --cert C --key K --api-key-file F --journal J --port N
"""
import argparse
import http.server
import json
import re
import ssl
import threading


def main() -> None:
    ap = argparse.ArgumentParser()
    for name in ("--cert", "--key", "--api-key-file", "--journal"):
        ap.add_argument(name, required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    api_key = open(args.api_key_file, encoding="utf-8").read().strip()
    tickets: dict[str, dict] = {}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):  # the journal is the log
            pass

        def answer(self, status: int, doc: dict) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if 0 < length <= 65536 else b""
            key_ok = self.headers.get("X-Api-Key") == api_key
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            with lock, open(args.journal, "a", encoding="utf-8") as j:
                j.write(json.dumps({"method": self.command, "path": self.path, "api_key_ok": key_ok,
                                    "body": body}) + "\n")
            if not key_ok:
                return self.answer(401, {"error": "missing or wrong API key"})
            if self.command == "POST" and self.path == "/api/v1/tickets" and isinstance(body, dict):
                with lock:
                    tid = f"TCK-{1000 + len(tickets) + 1}"
                    tickets[tid] = {"id": tid, "title": body.get("title"), "severity": body.get("severity"),
                                    "status": "open", "notes": []}
                return self.answer(201, {"id": tid, "status": "open"})
            m = re.fullmatch(r"/api/v1/tickets/(TCK-[0-9]+)(/notes)?", self.path)
            if m and m.group(1) in tickets:
                t = tickets[m.group(1)]
                if self.command == "POST" and m.group(2) and isinstance(body, dict):
                    with lock:
                        t["notes"].append(body.get("text"))
                    return self.answer(201, {"ticket": t["id"], "note": len(t["notes"])})
                if self.command == "GET" and not m.group(2):
                    return self.answer(200, t)
            return self.answer(404, {"error": "no such resource"})

        do_GET = do_POST = do_PUT = do_PATCH = handle_any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
