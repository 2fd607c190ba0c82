"""A small Hugging Face Hub-compatible server for tests and offline trials.

It speaks the part of the Hub's HTTP API that `huggingface_hub` uses to
create a model repository, commit files (regular and LFS, through the LFS
batch API), tag commits and download (repo info, tree, refs, commits and
`resolve`). State lives in memory. Tokens are checked like the Hub does:
writes need a valid token, a wrong token is refused everywhere with 401.

Faults can be injected: `server.fail("POST", r"/commit/", 503, times=2)`
answers the next two matching requests with a 503 without doing anything;
`lost=True` does the work and then answers with the error, as when a
response is lost after the Hub committed.

    python -m devtools.hubserver --port 8900 --token hf_local_token

starts one in the foreground (point `HF_ENDPOINT` at it and set
`HF_HUB_DISABLE_XET=1`).
"""

from __future__ import annotations

import argparse
import re
import threading
from http.server import ThreadingHTTPServer

from .handler import Handler
from .state import Commit, Fault, HubState


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tokens: dict | None = None):
        super().__init__((host, port), Handler)
        self.state = HubState(tokens or {})
        self.url = f"http://{host}:{self.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def fail(self, method: str, pattern: str, status: int, times: int = 1, lost: bool = False):
        with self.state.lock:
            self.state.faults.append(Fault(method, re.compile(pattern), status, times, lost))

    def commits(self, repo_id: str, revision: str = "main") -> list[Commit]:
        with self.state.lock:
            return self.state.repos[repo_id].history(revision)

    def bytes_received(self) -> int:
        """Every request body's bytes so far (uploads and commits): what publishing sent."""
        with self.state.lock:
            return sum(r.get("bytes", 0) for r in self.state.requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--token", default="hf_local_token")
    parser.add_argument("--user", default="local")
    args = parser.parse_args()
    server = HubServer(args.host, args.port, {args.token: args.user})
    print(f"Hub-compatible server on {server.url} (token {args.token!r}, user {args.user!r})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
