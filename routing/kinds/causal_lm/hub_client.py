"""A contributor's side of a hub, for `python -m routing lm train --hub`: what a mixture
asks of an expert (its API, read anonymously), its anchor (downloaded once, checked by
sha256), and the upload with a token, followed through validation with progress bars."""

from __future__ import annotations

import io
import time
import urllib.parse
from pathlib import Path

FINAL = ("accepted", "rejected", "failed", "retired")


class HubError(SystemExit):
    """What the hub answered, or why it could not be reached, for the person at the
    terminal (the command ends with it)."""


def _get(url: str, **kw):
    import requests

    try:
        answer = requests.get(url, timeout=60, **kw)
    except requests.RequestException as exc:
        raise HubError(f"cannot reach {url}: {exc}") from None
    if answer.status_code != 200:
        raise HubError(f"{url} answered {answer.status_code}: {_detail(answer)}")
    return answer


def _detail(answer) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:300]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


def mixture(hub: str, slug: str, domain: str | None = None) -> dict:
    """The mixture's API record (base, contract, domains); `domain` must be one of them."""
    url = f"{hub.rstrip('/')}/api/mixtures/{urllib.parse.quote(slug)}/"
    data = _get(url).json()
    if data.get("kind") != "causal-lm":
        raise HubError(f"mixture {slug!r} is a {data.get('kind')} mixture, not a language model")
    names = [d["name"] for d in data.get("domains", [])]
    if domain is not None and domain not in names:
        raise HubError(f"mixture {slug!r} has no domain {domain!r}; it has {sorted(names)}")
    return data


def anchor_file(hub: str, slug: str, sha256: str, folder: Path) -> Path:
    """The mixture's anchor in `folder`, downloaded unless a file with its sha256 is there;
    refused when the bytes are not the ones the hub names."""
    from ...files import file_sha256

    path = folder / f"anchor-{sha256[:16]}.safetensors"
    if path.is_file() and file_sha256(path) == sha256:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    url = f"{hub.rstrip('/')}/api/mixtures/{urllib.parse.quote(slug)}/anchor/download/"
    partial = path.with_suffix(".part")
    with _get(url, stream=True) as answer, open(partial, "wb") as out:
        for chunk in answer.iter_content(1 << 20):
            out.write(chunk)
    got = file_sha256(partial)
    if got != sha256:
        partial.unlink()
        raise HubError(f"the anchor downloaded from {url} has sha256 {got}, not {sha256}")
    partial.replace(path)
    return path


class _Reading(io.BytesIO):
    """A request body that moves a progress bar as it is sent."""

    def __init__(self, data: bytes, bar):
        super().__init__(data)
        self.bar = bar

    def read(self, n=-1):
        chunk = super().read(n)
        self.bar.update(len(chunk))
        return chunk


def upload(hub: str, token: str, *, slug: str, domain: str, name: str, path: Path,
           description: str = "") -> dict:  # fmt: skip
    """POST the expert to the hub with a progress bar; the expert's API record."""
    import requests
    from tqdm import tqdm
    from urllib3 import encode_multipart_formdata

    fields = {"mixture": slug, "domain": domain, "name": name, "description": description,
              "file": (path.name, path.read_bytes(), "application/octet-stream")}  # fmt: skip
    body, content_type = encode_multipart_formdata(fields)
    url = f"{hub.rstrip('/')}/api/experts/"
    with tqdm(total=len(body), unit="B", unit_scale=True, desc="uploading") as bar:
        try:
            answer = requests.post(
                url,
                data=_Reading(body, bar),
                headers={"Content-Type": content_type, "Authorization": f"Token {token}"},
                timeout=600,
            )
        except requests.RequestException as exc:
            raise HubError(f"cannot reach {url}: {exc}") from None
    if answer.status_code != 201:
        raise HubError(f"the hub refused the upload ({answer.status_code}): {_detail(answer)}")
    return answer.json()


def follow(hub: str, token: str, expert_id: int, *, every: float = 2.0,
           timeout: float = 3600) -> dict:  # fmt: skip
    """Poll the expert's validation with a progress bar until its verdict; its record."""
    from tqdm import tqdm

    root, auth = hub.rstrip("/"), {"Authorization": f"Token {token}"}
    deadline = time.monotonic() + timeout
    with tqdm(
        total=100, desc="validation", bar_format="{desc}: {percentage:3.0f}% {postfix}"
    ) as bar:
        while True:
            expert = _get(f"{root}/api/experts/{expert_id}/", headers=auth).json()
            jobs = _get(f"{root}/api/jobs/?expert={expert_id}", headers=auth).json()
            job = (jobs.get("results") or [None])[0]
            if job is not None:
                bar.n = job["progress"]
                bar.set_postfix_str(job["message"][:60])
            if expert["status"] in FINAL:
                bar.n = 100
                bar.refresh()
                return expert
            if time.monotonic() > deadline:
                raise HubError(f"no verdict after {timeout:.0f} s; see {root}/experts/{expert_id}/")
            time.sleep(every)
