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

    python -m tests.hubserver --port 8900 --token hf_local_token

starts one in the foreground (point `HF_ENDPOINT` at it and set
`HF_HUB_DISABLE_XET=1`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".onnx", ".gguf", ".zip", ".msgpack")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    spec = "https://git-lfs.github.com/spec/v1"
    return f"version {spec}\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Blob:
    data: bytes | None = None  # regular file content
    sha256: str | None = None  # LFS object id
    size: int = 0

    @property
    def oid(self) -> str:
        if self.sha256 is None:
            return git_blob_oid(self.data)
        return git_blob_oid(lfs_pointer(self.sha256, self.size))


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    files: dict[str, Blob]


@dataclass
class Repo:
    repo_id: str
    private: bool
    created: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(oid)

    def history(self, revision: str) -> list[Commit]:
        out, commit = [], self.resolve(revision)
        while commit is not None:
            out.append(commit)
            commit = self.commits.get(commit.parent) if commit.parent else None
        return out


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@dataclass
class Fault:
    method: str
    pattern: re.Pattern
    status: int
    times: int
    lost: bool


class HubState:
    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens  # token -> user name
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.faults: list[Fault] = []
        self.requests: list[dict] = []  # method, path, headers of every request
        self.lock = threading.RLock()
        self._counter = 0

    def new_oid(self, *parts: str) -> str:
        self._counter += 1
        return hashlib.sha1("\0".join((*parts, str(self._counter))).encode()).hexdigest()

    def commit(self, repo: Repo, branch: str, title: str, message: str, user: str, files):
        parent = repo.branches.get(branch)
        date = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        oid = self.new_oid(repo.repo_id, parent or "", title)
        repo.commits[oid] = Commit(oid, parent, title, message, user, date, files)
        repo.branches[branch] = oid
        return repo.commits[oid]


class Handler(BaseHTTPRequestHandler):
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
        with self.state.lock:
            self.state.requests.append(
                {"method": method, "path": path, "headers": dict(self.headers.items())}
            )
            fault = next(
                (f for f in self.state.faults if f.method == method and f.pattern.search(path)),
                None,
            )
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.state.faults.remove(fault)
        body = self._body() if method in ("POST", "PUT") else b""
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

    def create_repo(self, base, body, **_):
        user = self._user(required=True)
        data = json.loads(body)
        repo_id = f"{data.get('organization') or user}/{data['name']}"
        if repo_id in self.state.repos:
            raise HubError(409, "You already created this model repo", url=f"{base}/{repo_id}")
        private = data.get("private") or data.get("visibility") == "private"
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        repo = Repo(repo_id, bool(private), now)
        self.state.repos[repo_id] = repo
        gitattributes = {".gitattributes": Blob(data=GITATTRIBUTES.encode())}
        self.state.commit(repo, "main", "initial commit", "", user, gitattributes)
        return 200, {"url": f"{base}/{repo_id}", "name": repo_id, "id": repo_id}, None

    def validate_yaml(self, body, **_):
        import yaml

        self._user(required=False)
        content = json.loads(body)["content"]
        if content.startswith("---"):
            try:
                yaml.safe_load(content.split("---", 2)[1])
            except yaml.YAMLError as exc:
                return 400, {"errors": [{"message": str(exc)}], "warnings": []}, None
        return 200, {"errors": [], "warnings": []}, None

    def whoami(self, **_):
        user = self._user(required=True)
        return 200, {"type": "user", "name": user, "auth": {"type": "access_token"}}, None

    def repo_info(self, repo, rev=None, **_):
        r = self._repo(repo, self._user(required=False))
        commit = self._commit(r, rev or "main")
        payload = {
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24],
            "id": repo,
            "modelId": repo,
            "author": repo.split("/")[0],
            "sha": commit.oid,
            "private": r.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "createdAt": r.created,
            "lastModified": commit.date,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }
        return 200, payload, None

    def _entry(self, path: str, blob: Blob) -> dict:
        entry = {"type": "file", "oid": blob.oid, "path": path, "size": blob.size}
        if blob.sha256 is not None:
            pointer = lfs_pointer(blob.sha256, blob.size)
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": len(pointer)}
        else:
            entry["size"] = len(blob.data)
        return entry

    def tree(self, repo, rev, sub=None, query=None, **_):
        r = self._repo(repo, self._user(required=False))
        commit = self._commit(r, rev)
        prefix = f"{sub.rstrip('/')}/" if sub else ""
        recursive = (query or {}).get("recursive", ["false"])[0].lower() == "true"
        out, folders = [], set()
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            out.append(self._entry(path, commit.files[path]))
        out += [{"type": "directory", "oid": "0" * 40, "path": f} for f in sorted(folders)]
        return 200, out, None

    def refs(self, repo, **_):
        r = self._repo(repo, self._user(required=False))

        def ref(kind, name, oid):
            return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}

        return (
            200,
            {
                "branches": [ref("heads", n, o) for n, o in r.branches.items()],
                "tags": [ref("tags", n, o) for n, o in r.tags.items()],
                "converts": [],
            },
            None,
        )

    def commits(self, repo, rev, **_):
        r = self._repo(repo, self._user(required=False))
        self._commit(r, rev)
        out = [
            {
                "id": c.oid,
                "title": c.title,
                "message": c.message,
                "authors": [{"user": c.author}],
                "date": c.date,
            }
            for c in r.history(unquote(rev))
        ]
        return 200, out, None

    def preupload(self, repo, rev, body, **_):
        user = self._user(required=True)
        r = self._repo(repo, user)
        head = r.resolve(unquote(rev))
        files = []
        for f in json.loads(body)["files"]:
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] >= LFS_MIN_SIZE
            current = head.files.get(f["path"]) if head else None
            oid = None
            if current is not None:
                oid = current.sha256 if current.sha256 is not None else current.oid
            mode = "lfs" if lfs else "regular"
            files.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return 200, {"files": files, "commitOid": head.oid if head else None}, None

    def lfs_batch(self, base, repo, body, **_):
        user = self._user(required=True)
        self._repo(repo, user)
        data = json.loads(body)
        objects = []
        for obj in data["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.state.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{base}/lfs-upload/{obj['oid']}", "expires_in": 3600}
                }
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, None

    def lfs_put(self, oid, body, **_):
        # Like the Hub's storage, the upload URL is pre-signed: no Authorization is needed.
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "the uploaded content does not match its sha256")
        self.state.lfs[oid] = body
        return 200, b"", {"ETag": f'"{oid}"'}

    def create_commit(self, base, repo, rev, body, **_):
        user = self._user(required=True)
        r = self._repo(repo, user)
        branch = unquote(rev)
        if branch not in r.branches and r.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"]
        parent = r.branches.get(branch)
        if header.get("parentCommit") and header["parentCommit"] != parent:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(r.commits[parent].files) if parent else {}
        for op in lines[1:]:
            key, value = op["key"], op["value"]
            if key == "file":
                files[value["path"]] = Blob(data=base64.b64decode(value["content"]))
            elif key == "lfsFile":
                if value["oid"] not in self.state.lfs:
                    raise HubError(422, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = Blob(sha256=value["oid"], size=int(value["size"]))
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: b for p, b in files.items() if not p.startswith(folder)}
            else:
                raise HubError(400, f"unknown operation {key!r}")
        commit = self.state.commit(
            r, branch, header["summary"], header.get("description", ""), user, files
        )
        payload = {
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{base}/{repo}/commit/{commit.oid}",
            "hookOutput": "",
            "pullRequestUrl": None,
        }
        return 200, payload, None

    def create_tag(self, repo, rev, body, **_):
        user = self._user(required=True)
        r = self._repo(repo, user)
        commit = self._commit(r, rev)
        tag = json.loads(body)["tag"]
        if tag in r.tags:
            raise HubError(409, f"Tag {tag} already exists")
        r.tags[tag] = commit.oid
        return 200, {}, None

    def resolve(self, repo, rev, file, **_):
        r = self._repo(repo, self._user(required=False))
        commit = self._commit(r, rev)
        path = unquote(file)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "Content-Type": "application/octet-stream"}
        if blob.sha256 is not None:
            data = self.state.lfs[blob.sha256]
            headers.update(
                {
                    "ETag": f'"{blob.sha256}"',
                    "X-Linked-Etag": f'"{blob.sha256}"',
                    "X-Linked-Size": str(blob.size),
                }
            )
        else:
            data = blob.data
            headers["ETag"] = f'"{blob.oid}"'
        ranged = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
        if ranged:
            start = int(ranged.group(1))
            end = int(ranged.group(2)) if ranged.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return 206, data[start : end + 1], headers
        return 200, data, headers


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
