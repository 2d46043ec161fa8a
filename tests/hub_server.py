"""A tiny in-memory Hugging Face Hub that the REAL ``huggingface_hub`` client (2.x, httpx2) can talk to.

Loopback only (127.0.0.1, ephemeral port), stdlib only, model repos "org/name" only. Speaks what
``hf_hub_download``, ``snapshot_download``, ``HfApi.model_info/repo_info/list_repo_tree/get_paths_info/
whoami/create_repo/upload_folder/create_commit`` use. No LFS/Xet transfers, PRs, pagination or redirects.
Client set-up: ``configure_client`` below; the recipe is in the docstring of tests/test_hub_server.py.

Xet is never used: a download takes Xet only if the HEAD /resolve answer has ``X-Xet-Hash`` plus a refresh
route (``X-Xet-Refresh-Route`` or ``Link: rel="xet-auth"``; ``utils._xet.parse_xet_file_data_from_response``)
or a cached tree listing has ``xetHash``; an upload only for files /preupload marks "lfs". We send none of
these (with hf_xet installed ``upload_folder`` runs ``_upload_pipeline``, fine with all-"regular" files).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# Served like the Hub serves LFS files: ETag = sha256 of the content, plus X-Linked-Etag / X-Linked-Size.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".npz", ".h5", ".msgpack", ".gguf")
FAULT_KINDS = ("500", "truncate", "wrong_etag", "drop")


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob: the Hub's ETag (and tree "oid") of a non-LFS file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_etag(path: str, data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if path.endswith(LFS_SUFFIXES) else git_blob_sha1(data)


def valid_path(path: str) -> bool:
    """Relative POSIX path: no '', '.' or '..' segment (so not absolute either), no backslash, no NUL."""
    bad = "\\" in path or "\0" in path
    return bool(path) and not bad and all(seg not in ("", ".", "..") for seg in path.split("/"))


def valid_repo_id(repo_id: str) -> bool:
    return valid_path(repo_id) and repo_id.count("/") == 1


# One entry of HubServer.requests: path is the raw request target (query included), header names lower-case.
LoggedRequest = namedtuple("LoggedRequest", "method path headers")


class HubError(Exception):
    """Answered like the Hub: hf_raise_for_status maps X-Error-Code to Repository/Revision/EntryNotFound."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None, **body):
        super().__init__(message)
        self.status, self.message, self.code, self.commit, self.body = status, message, code, commit, body


class HubServer:
    """In-memory hub: ``repos[repo_id] = {"commits": [{"sha", "parent", "message", "files": {path: bytes}}],
    "refs": {"main": sha, <branch or tag>: sha}, "tags": {tag names}}``; a commit holds its full snapshot."""

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.requests: list[LoggedRequest] = []
        self._faults: list[list] = []  # [kind, path_glob, times_left, method]
        self._lock = threading.RLock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> HubServer:
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # loopback only, ephemeral port
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    __enter__ = start

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:  # keeps its value after stop()
        return f"http://127.0.0.1:{self._port}"

    def create_repo(self, repo_id: str) -> str:
        """Create an empty repo (one empty commit on 'main') if needed; return the sha of 'main'."""
        if not valid_repo_id(repo_id):
            raise ValueError(f"bad repo id {repo_id!r} (expected 'org/name')")
        with self._lock:
            if repo_id not in self.repos:
                self.repos[repo_id] = {"commits": [], "refs": {}, "tags": set()}
                self._commit(repo_id, "main", {}, "initial commit", create_branch=True)
            return self.repos[repo_id]["refs"]["main"]

    def add_file(self, repo_id: str, path: str, data: bytes, revision: str = "main") -> str:
        """Commit one file on branch ``revision`` (repo, branch created if needed); return the commit sha."""
        return self.add_files(repo_id, {path: data}, revision)

    def add_files(self, repo_id: str, files: dict[str, bytes], revision: str = "main") -> str:
        """Commit several files at once on branch ``revision``; return the new commit sha."""
        if not all(valid_path(p) for p in files):
            raise ValueError(f"bad path in {list(files)}")
        with self._lock:
            self.create_repo(repo_id)
            return self._commit(repo_id, revision, dict(files), f"add {', '.join(files)}", create_branch=True)

    def add_tag(self, repo_id: str, tag: str, revision: str = "main") -> str:
        """Point tag ``tag`` at ``revision``; return the commit sha."""
        with self._lock:
            sha = self.resolve(repo_id, revision)
            self.repos[repo_id]["refs"][tag] = sha
            self.repos[repo_id]["tags"].add(tag)
            return sha

    def resolve(self, repo_id: str, revision: str = "main") -> str:
        """Branch, tag or full sha -> commit sha (HubError 404 as the Hub would answer)."""
        return self._lookup(repo_id, revision)[0]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self._lookup(repo_id, revision)[1])

    def set_fault(self, kind: str, path_glob: str = "*", times: int = 1, method: str | None = None) -> None:
        """Make the next ``times`` requests whose decoded URL path matches ``path_glob`` (fnmatch, e.g.
        "*/model.safetensors") and method matches ``method`` (None = any) fail. Kinds: "500" (any endpoint);
        "truncate" (GET /resolve: full headers and Content-Length, half the body, then close); "wrong_etag"
        (HEAD/GET /resolve: ETag / X-Linked-Etag hash other bytes); "drop" (any endpoint: the connection
        is closed before any response byte, a dropped connection). Faults fire in the order they were set,
        at most one per request."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}, expected one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append([kind, path_glob, times, method.upper() if method else None])

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str, kinds: tuple[str, ...]) -> str | None:
        with self._lock:
            for fault in self._faults:
                kind, glob, times, only = fault
                if times > 0 and kind in kinds and only in (None, method) and fnmatch.fnmatch(path, glob):
                    fault[2] -= 1
                    return kind

    def _lookup(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]]:
        with self._lock:
            repo = self.repos.get(repo_id)
            if repo is None:
                raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
            sha = repo["refs"].get(revision, revision)
            for commit in repo["commits"]:
                if commit["sha"] == sha:
                    return sha, commit["files"]
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _commit(self, repo_id: str, branch: str, add: dict[str, bytes], message: str,
                delete: tuple[str, ...] = (), create_branch: bool = False) -> str:
        """New commit on ``branch`` (a new branch starts from 'main'); ``delete`` holds files or folders."""
        with self._lock:
            repo = self.repos[repo_id]
            if branch in repo["tags"]:
                raise HubError(400, f"Cannot commit to tag {branch!r}")
            if branch not in repo["refs"] and not create_branch:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            parent = repo["refs"].get(branch, repo["refs"].get("main"))
            files = dict(self._lookup(repo_id, parent)[1]) if parent else {}
            for gone in delete:
                folder = gone.rstrip("/") + "/"
                files = {p: d for p, d in files.items() if p != gone and not p.startswith(folder)}
            files.update(add)
            self._counter += 1
            sha = hashlib.sha1(f"{repo_id}\n{parent}\n{self._counter}\n{message}".encode()).hexdigest()
            repo["commits"].append({"sha": sha, "parent": parent, "message": message, "files": files})
            repo["refs"][branch] = sha
            return sha


def _entry(path: str, data: bytes | None = None) -> dict:
    """Tree / paths-info entry, as parsed by ``hf_api.RepoFile`` (or ``RepoFolder`` when data is None)."""
    if data is None:
        return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
    entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
    if path.endswith(LFS_SUFFIXES):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


def _tree(files: dict[str, bytes], base: str, recursive: bool) -> list[dict]:
    """Listing under ``base`` ('' = root), folders included: GET /api/models/{id}/tree/{rev}[/{base}]."""
    prefix, out = (base + "/" if base else ""), {}
    for path, data in sorted(files.items()):
        if path.startswith(prefix):
            parts = path[len(prefix) :].split("/")
            for i in range(1, len(parts) if recursive else min(len(parts), 2)):
                out.setdefault(prefix + "/".join(parts[:i]), _entry(prefix + "/".join(parts[:i])))
            if recursive or len(parts) == 1:
                out[path] = _entry(path, data)
    return list(out.values())


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.0"  # one request per connection: once stopped, the server is really gone

    def log_message(self, format, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, truncate: bool = False):
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            # "truncate" promises len(body) bytes, sends half, closes: httpx2.RemoteProtocolError client-side
            self.wfile.write(body[: len(body) // 2] if truncate else body)
        self.wfile.flush()
        self.close_connection = True

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def do_GET(self) -> None:  # also HEAD and POST
        hub, method = self.hub, self.command
        hub.requests.append(LoggedRequest(method, self.path, {k.lower(): v for k, v in self.headers.items()}))
        raw_path, query = urlsplit(self.path)[2:4]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            # Traversal guard on the fully decoded path (so "%2e%2e", "%2F", "%5C" too), before any routing.
            if not valid_path(unquote(raw_path)[1:]):
                raise HubError(400, f"Invalid path {raw_path!r}")
            seg = [unquote(s) for s in raw_path[1:].split("/")]
            resolve = len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD")
            kinds = ("500", "drop") if not resolve else FAULT_KINDS if method == "GET" else ("500", "wrong_etag",
                                                                                            "drop")
            fault = hub._take_fault(method, unquote(raw_path), kinds)
            if fault == "drop":  # no status line, no headers: httpx2 reports "Server disconnected"
                self.close_connection = True
                return
            if fault == "500":
                raise HubError(500, "Internal Error (injected fault)")
            if resolve:  # /{org}/{name}/resolve/{revision}/{path...}
                return self._resolve("/".join(seg[:2]), seg[3], "/".join(seg[4:]), fault)
            self._api(method, seg, parse_qs(query), body)
        except HubError as err:
            # X-Repo-Commit on EntryNotFound lets the client cache ".no_exist/<commit>/<file>".
            headers = {"X-Error-Message": err.message, "X-Error-Code": err.code, "X-Repo-Commit": err.commit}
            body = json.dumps({"error": err.message, **err.body}).encode()
            self._send(err.status, body, {k: v for k, v in headers.items() if v})

    do_HEAD = do_POST = do_GET

    def _resolve(self, repo_id: str, revision: str, path: str, fault: str | None) -> None:
        if not (valid_repo_id(repo_id) and valid_path(revision) and valid_path(path)):
            raise HubError(400, f"Invalid repo id, revision or path: {repo_id!r} {revision!r} {path!r}")
        sha, files = self.hub._lookup(repo_id, revision)
        if path not in files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit=sha)
        data = files[path]
        etag = file_etag(path, data) if fault != "wrong_etag" else file_etag(path, b"wrong" + data)
        # file_download.get_hf_file_metadata (the HEAD) reads X-Repo-Commit (-> snapshots/<sha>),
        # X-Linked-Etag or ETag (-> blobs/<etag>; never checked against the bytes), X-Linked-Size or
        # Content-Length (the size http_get checks). No X-Repo-Commit or no ETag -> FileMetadataError.
        headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": sha, "ETag": f'"{etag}"',
                   "Accept-Ranges": "bytes"}
        if path.endswith(LFS_SUFFIXES):
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        status, start, end = 200, 0, len(data)
        # After a broken stream file_download.http_get resumes with "Range: bytes=<received>-" and expects 206
        # + Content-Range (a 200 makes it truncate its temp file and start over).
        if (range_header := self.headers.get("Range")) and self.command == "GET":
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())  # no suffix ranges ("bytes=-N")
            if match:
                start, end = int(match.group(1)), min(int(match.group(2) or len(data) - 1) + 1, len(data))
            if not match or start >= end:
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            status, headers["Content-Range"] = 206, f"bytes {start}-{end - 1}/{len(data)}"
        self._send(status, data[start:end], headers, truncate=fault == "truncate")

    def _api(self, method: str, seg: list[str], query: dict, body: bytes) -> None:
        hub, route = self.hub, (method, *seg[:3])
        if route == ("GET", "api", "whoami-v2"):  # HfApi.whoami (upload_folder itself never calls it)
            return self._json({"type": "user", "id": "local", "name": "local-user", "orgs": [], "auth": {}})
        if route == ("POST", "api", "validate-yaml"):  # HfApi._validate_yaml, before uploading a README.md
            return self._json({"errors": [], "warnings": []})
        if route == ("POST", "api", "repos", "create") and len(seg) == 3:
            self._require_token()
            payload = json.loads(body or b"{}")
            repo_id = f"{payload.get('organization')}/{payload.get('name')}"
            if payload.get("type", "model") not in (None, "model") or not valid_repo_id(repo_id):
                raise HubError(400, f"Invalid model repo {repo_id!r} (expected 'org/name')")
            if repo_id in hub.repos:  # create_repo(exist_ok=True) swallows this 409 but still reads "url"
                raise HubError(409, "You already created this model repo", url=f"{hub.url}/{repo_id}")
            hub.create_repo(repo_id)
            return self._json({"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id})
        if len(seg) < 4 or seg[:2] != ["api", "models"] or not valid_repo_id("/".join(seg[2:4])):
            raise HubError(404, f"Unknown endpoint {method} /{'/'.join(seg)}")
        repo_id, action = "/".join(seg[2:4]), (seg[4] if len(seg) > 4 else "")
        revision = seg[5] if len(seg) > 5 else "main"  # revisions come quoted with safe="" ("refs%2Fpr%2F1")
        if method == "GET" and (len(seg) == 4 or (action == "revision" and len(seg) == 6)):
            return self._model_info(repo_id, revision)
        if method == "GET" and action == "tree" and len(seg) >= 6:
            # HfApi.list_repo_tree, used by snapshot_download after model_info; one page, so no "Link" header.
            files, base = hub._lookup(repo_id, revision)[1], "/".join(seg[6:])
            if base and (base in files or not any(p.startswith(base + "/") for p in files)):
                raise HubError(404, f"Entry not found: {base}", "EntryNotFound")
            return self._json(_tree(files, base, query.get("recursive", [""])[0].lower() in ("1", "true")))
        if method == "POST" and action == "paths-info" and len(seg) == 6:
            files = hub._lookup(repo_id, revision)[1]  # HfApi.get_paths_info: form field "paths", repeated
            folders = {p.rsplit("/", i)[0] for p in files for i in range(1, p.count("/") + 1)}
            paths = parse_qs(body.decode()).get("paths", [])
            return self._json([_entry(p, files.get(p)) for p in paths if p in files or p in folders])
        if method == "POST" and action == "preupload" and len(seg) == 6:
            return self._preupload(repo_id, revision, body)
        if method == "POST" and action == "commit" and len(seg) == 6:
            return self._commit(repo_id, revision, query, body)
        raise HubError(404, f"Unknown endpoint {method} /{'/'.join(seg)}")

    def _require_token(self) -> None:
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            raise HubError(401, "Invalid credentials in Authorization header")

    def _model_info(self, repo_id: str, revision: str) -> None:  # -> ModelInfo; snapshot_download needs "sha"
        sha, files = self.hub._lookup(repo_id, revision)
        siblings = [{"rfilename": p, "size": len(d), "blobId": git_blob_sha1(d)} for p, d in files.items()]
        self._json({"id": repo_id, "modelId": repo_id, "sha": sha, "private": False, "disabled": False,
                    "gated": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings})

    def _preupload(self, repo_id: str, revision: str, body: bytes) -> None:
        # _commit_api._fetch_upload_modes accepts uploadMode "regular" | "lfs". "regular" = the bytes travel
        # base64 in the commit NDJSON: no LFS batch, no Xet. "oid" = git sha1 of the file already in the repo:
        # create_commit and the upload pipeline drop additions whose local git sha1 equals it (unchanged).
        self._require_token()
        sha, files = self.hub._lookup(repo_id, revision)
        paths = [item["path"] for item in json.loads(body)["files"]]
        if not all(map(valid_path, paths)):
            raise HubError(400, f"Invalid path in {paths}")
        self._json({"commitOid": sha, "files": [{"path": p, "uploadMode": "regular", "shouldIgnore": False,
                                                  "oid": git_blob_sha1(files[p]) if p in files else None}
                                                 for p in paths]})

    def _commit(self, repo_id: str, branch: str, query: dict, body: bytes) -> None:
        # _commit_api._send_commit posts NDJSON {"key": "header"|"file"|"deletedFile"|"deletedFolder"|
        # "lfsFile", "value": {...}}, reads "commitOid" and "commitUrl" (CommitInfo parses the repo URL out).
        self._require_token()
        if query.get("create_pr", ["0"])[0] == "1":
            raise HubError(400, "Pull requests are not supported by the local hub")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first NDJSON line must be the commit header")
        header, add, delete = lines[0]["value"], {}, []
        head, files = self.hub._lookup(repo_id, branch)
        if header.get("parentCommit") not in (None, head):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if not valid_path(path.rstrip("/") if key == "deletedFolder" else path):
                raise HubError(400, f"Invalid path {path!r}")
            if key == "file" and value.get("encoding") == "base64":
                add[path] = base64.b64decode(value["content"])
            elif key == "deletedFolder" or (key == "deletedFile" and path in files):
                delete.append(path)
            elif key == "deletedFile":
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            else:
                raise HubError(400, f"Unsupported operation {key!r}: the local hub takes base64 'file' lines")
        sha = self.hub._commit(repo_id, branch, add, header.get("summary", ""), delete=tuple(delete))
        self._json({"success": True, "commitOid": sha, "commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}"})


def configure_client(monkeypatch, endpoint: str, hf_home: str | Path, *, offline: bool = False) -> Path:
    """Point the (already imported) huggingface_hub at ``endpoint`` with a private HF_HOME; return its cache.
    Sets the env vars (subprocesses, fresh imports) AND the ``huggingface_hub.constants`` computed from them
    at import time (read as ``constants.X`` at call time). Unsets HF_TOKEN: pass ``token=`` for writes."""
    from huggingface_hub import constants

    home, endpoint = Path(hf_home), endpoint.rstrip("/")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
                        "HF_HUB_OFFLINE": str(int(offline)), "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
        monkeypatch.setenv(name, value)
    for name, value in {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",  # hf_hub_url
        "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HUGGINGFACE_HUB_CACHE": str(home / "hub"),
        "HF_ASSETS_CACHE": str(home / "assets"), "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"), "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_OFFLINE": offline, "HF_HUB_DISABLE_TELEMETRY": True,
    }.items():
        monkeypatch.setattr(constants, name, value)
    return home / "hub"
