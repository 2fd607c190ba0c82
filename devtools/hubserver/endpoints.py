"""The Hub API endpoints that `huggingface_hub` calls, as methods of the request handler
(`Handler` in handler.py routes to them)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from urllib.parse import unquote

from .state import (
    GITATTRIBUTES,
    LFS_MIN_SIZE,
    LFS_SUFFIXES,
    Blob,
    HubError,
    Repo,
    lfs_pointer,
)


class Endpoints:
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
