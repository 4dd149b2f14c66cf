"""Serves a quote on port 8000. Standard library only, so it runs on a distroless Python image."""
import random
from http.server import BaseHTTPRequestHandler, HTTPServer

QUOTES = [
    "Simplicity is prerequisite for reliability.",
    "What is not there cannot be exploited.",
    "Build with everything, ship with almost nothing.",
]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"quote of the moment: {random.choice(QUOTES)}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    print("quotes listening on port 8000", flush=True)
    HTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
