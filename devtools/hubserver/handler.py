"""The request handler of the Hub-compatible server: tokens, faults, routing."""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlparse

from .endpoints import Endpoints
from .state import REPO, Commit, HubError, HubState, Repo


class Handler(Endpoints, BaseHTTPRequestHandler):
    server_version = "MoECollabTestHub/1"
    protocol_version = "HTTP/1.1"

    # --- plumbing -------------------------------------------------------------

    @property
    def state(self) -> HubState:
        return self.server.state

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head=False):
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers=None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _user(self, required: bool) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            if required:
                raise HubError(401, "Authorization header is required")
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.state.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.state.tokens[token]

    def _repo(self, repo_id: str, user: str | None) -> Repo:
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and user is None):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(unquote(revision))
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _handle(self, method: str):
        url = urlparse(self.path)
        path, query = url.path, parse_qs(url.query)
        record = {"method": method, "path": path, "headers": dict(self.headers.items())}
        with self.state.lock:
            self.state.requests.append(record)
            fault = next(
                (f for f in self.state.faults if f.method == method and f.pattern.search(path)),
                None,
            )
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.state.faults.remove(fault)
        body = self._body() if method in ("POST", "PUT") else b""
        record["bytes"] = len(body)  # what the client sent (bench/export_lm.py sums it)
        if fault is not None and not fault.lost:
            return self._json(fault.status, {"error": "injected fault"})
        try:
            with self.state.lock:
                result = self._route(method, path, query, body)
        except HubError as exc:
            headers = {"X-Error-Message": exc.message}
            if exc.code:
                headers["X-Error-Code"] = exc.code
            payload = json.dumps({"error": exc.message, **exc.extra}).encode()
            return self._send(exc.status, payload, headers, method == "HEAD")
        if fault is not None:  # the work is done, but the answer is lost
            return self._json(fault.status, {"error": "injected fault after the work"})
        status, payload, headers = result
        if isinstance(payload, bytes):
            return self._send(status, payload, headers, head=method == "HEAD")
        return self._json(status, payload, headers)

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    # --- routes ---------------------------------------------------------------

    def _route(self, method, path, query, body):
        base = self.server.url
        routes = [
            ("POST", r"^/api/repos/create$", self.create_repo),
            ("POST", r"^/api/validate-yaml$", self.validate_yaml),
            ("GET", r"^/api/whoami-v2$", self.whoami),
            ("GET", rf"^/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?$", self.repo_info),
            ("GET", rf"^/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?$", self.tree),
            ("GET", rf"^/api/models/{REPO}/refs$", self.refs),
            ("GET", rf"^/api/models/{REPO}/commits/(?P<rev>[^/]+)$", self.commits),
            ("POST", rf"^/api/models/{REPO}/preupload/(?P<rev>[^/]+)$", self.preupload),
            ("POST", rf"^/api/models/{REPO}/commit/(?P<rev>[^/]+)$", self.create_commit),
            ("POST", rf"^/api/models/{REPO}/tag/(?P<rev>[^/]+)$", self.create_tag),
            ("POST", rf"^/{REPO}\.git/info/lfs/objects/batch$", self.lfs_batch),
            ("PUT", r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$", self.lfs_put),
            ("GET", rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", self.resolve),
            ("HEAD", rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", self.resolve),
        ]
        for verb, pattern, view in routes:
            match = re.match(pattern, path)
            if verb == method and match:
                return view(base=base, query=query, body=body, **match.groupdict())
        raise HubError(404, f"no route for {method} {path}")
