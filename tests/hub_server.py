"""A tiny in-memory Hugging Face Hub that the REAL ``huggingface_hub`` client (2.x, httpx2 based) can talk to.

Only loopback (127.0.0.1, ephemeral port), stdlib only. It speaks the subset of the Hub HTTP protocol used by
``hf_hub_download``, ``snapshot_download``, ``HfApi.model_info/repo_info/list_repo_tree/get_paths_info``,
``HfApi.create_repo`` and ``HfApi.upload_folder``/``create_commit`` (model repos only, ids "org/name").

Pointing the client at it (huggingface_hub reads its settings into ``huggingface_hub.constants`` at IMPORT time,
so setting ``HF_ENDPOINT`` in a test is too late once anything imported it)::

    with HubServer() as hub:
        configure_client(monkeypatch, hub.url, tmp_path / "hf_home")   # env vars + constants, see below
        hub.add_file("org/model", "config.json", b"{}")
        path = hf_hub_download("org/model", "config.json")             # no endpoint=/cache_dir= needed
        HfApi(token="x").upload_folder(repo_id="org/model", folder_path=folder)
        configure_client(monkeypatch, hub.url, tmp_path / "hf_home", offline=True)  # == HF_HUB_OFFLINE=1

A subprocess (fresh import) only needs the env vars: HF_ENDPOINT=hub.url, HF_HOME=..., HF_HUB_OFFLINE=0/1.
Passing ``endpoint=hub.url`` to hf_hub_download/snapshot_download/HfApi also works without patching ENDPOINT.

Xet: the client uses Xet for a download only if the HEAD /resolve response has ``X-Xet-Hash`` plus a refresh
route (``X-Xet-Refresh-Route`` header or ``Link: <..>; rel="xet-auth"``) -- see
``utils._xet.parse_xet_file_data_from_response`` -- or if a cached tree listing carries ``xetHash``; for uploads
only for files that ``/preupload`` marks ``"lfs"``. We never send any of these, so everything is plain HTTP.
Not supported: LFS/Xet transfers, pull requests, datasets/spaces, pagination, redirects.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# Files served the way the Hub serves LFS files: ETag = sha256 of the content (+ X-Linked-Etag/-Size).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".npz", ".h5", ".msgpack", ".gguf")
FAULT_KINDS = ("500", "truncate", "wrong_etag")


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob: what the Hub uses as ETag (and tree ``oid``) of non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


def file_etag(path: str, data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if is_lfs(path) else git_blob_sha1(data)


def valid_path(path: str) -> bool:
    """Relative POSIX path with no '', '.', '..' segment, no backslash, no NUL (so also not absolute)."""
    return bool(path) and "\\" not in path and "\0" not in path and all(
        seg not in ("", ".", "..") for seg in path.split("/")
    )


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # raw request target, query string included
    headers: dict  # lower-cased header names


@dataclass
class _Fault:
    kind: str
    path_glob: str
    times: int
    method: str | None


class HubError(Exception):
    """An HTTP error answered the way the Hub does: ``X-Error-Code`` is what ``utils._http.hf_raise_for_status``
    maps to RepositoryNotFoundError / RevisionNotFoundError / RemoteEntryNotFoundError."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


class HubServer:
    """In-memory hub. ``repos[repo_id] = {"commits": [{"sha", "parent", "message", "files": {path: bytes}}],
    "refs": {"main": sha, <branch or tag>: sha}, "tags": {tag names}}``. A commit holds its full snapshot."""

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.requests: list[LoggedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.RLock()
        self._counter = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> HubServer:
        handler = type("BoundHubHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # loopback only, ephemeral port
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # ---------------------------------------------------------------- store
    def create_repo(self, repo_id: str) -> str:
        """Create an empty repo (one empty commit on 'main'); return that commit sha. No-op if it exists."""
        if not (valid_path(repo_id) and repo_id.count("/") == 1):
            raise ValueError(f"bad repo id {repo_id!r}")
        with self._lock:
            if repo_id not in self.repos:
                self.repos[repo_id] = {"commits": [], "refs": {}, "tags": set()}
                self._commit(repo_id, "main", {}, "initial commit", create_branch=True)
            return self.repos[repo_id]["refs"]["main"]

    def add_file(self, repo_id: str, path: str, data: bytes, revision: str = "main") -> str:
        """Commit one file on branch ``revision`` (repo/branch created if needed); return the new commit sha."""
        return self.add_files(repo_id, {path: data}, revision)

    def add_files(self, repo_id: str, files: dict[str, bytes], revision: str = "main", message: str = "") -> str:
        if not all(valid_path(p) for p in files):
            raise ValueError(f"bad path in {list(files)}")
        with self._lock:
            self.create_repo(repo_id)
            return self._commit(repo_id, revision, files, message or f"add {', '.join(files)}", create_branch=True)

    def add_tag(self, repo_id: str, tag: str, revision: str = "main") -> str:
        with self._lock:
            sha = self.resolve(repo_id, revision)
            self.repos[repo_id]["refs"][tag] = sha
            self.repos[repo_id]["tags"].add(tag)
            return sha

    def resolve(self, repo_id: str, revision: str = "main") -> str:
        """Branch, tag or full commit sha -> commit sha (raises HubError 404 like the Hub)."""
        return self._lookup(repo_id, revision)[0]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self._lookup(repo_id, revision)[1])

    def set_fault(self, kind: str, path_glob: str = "*", times: int = 1, method: str | None = None) -> None:
        """Inject a failure into the next ``times`` matching requests.

        ``path_glob`` is fnmatch'ed against the decoded URL path (e.g. "*/model.safetensors", "*/resolve/*");
        ``method`` ("GET", "HEAD", ...) restricts it further. Kinds: "500" (any endpoint: answer HTTP 500),
        "truncate" (GET /resolve: full headers/Content-Length, half the body, then close the connection),
        "wrong_etag" (HEAD/GET /resolve: ETag and X-Linked-Etag that do not match the content).
        Faults fire in the order they were set, at most one per request; ``times`` counts firings.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}, expected one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append(_Fault(kind, path_glob, times, method.upper() if method else None))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ---------------------------------------------------------------- internals
    def _take_fault(self, method: str, path: str, kinds: tuple[str, ...]) -> str | None:
        with self._lock:
            for fault in self._faults:
                if (fault.times > 0 and fault.kind in kinds and fault.method in (None, method)
                        and fnmatch.fnmatch(path, fault.path_glob)):
                    fault.times -= 1
                    return fault.kind
        return None

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
                files = {p: d for p, d in files.items() if p != gone and not p.startswith(gone.rstrip("/") + "/")}
            files.update(add)
            self._counter += 1
            seed = [repo_id, parent, message, self._counter, sorted((p, git_blob_sha1(d)) for p, d in files.items())]
            sha = hashlib.sha1(json.dumps(seed).encode()).hexdigest()
            repo["commits"].append({"sha": sha, "parent": parent, "message": message, "files": files})
            repo["refs"][branch] = sha
            return sha


def _entry(path: str, data: bytes) -> dict:
    """A tree / paths-info entry, parsed by ``hf_api.RepoFile`` (oid, size, path, lfs{oid,size,pointerSize})."""
    entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
    if is_lfs(path):
        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return entry


def _folder(path: str) -> dict:
    return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}


def _list(files: dict[str, bytes], base: str, recursive: bool) -> list[dict]:
    """Tree listing under ``base`` ('' = root), folders included, like GET /api/models/{id}/tree/{rev}/{base}."""
    prefix = base + "/" if base else ""
    out: dict[str, dict] = {}
    for path, data in sorted(files.items()):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix):].split("/")
        for i in range(1, len(parts)):
            folder = prefix + "/".join(parts[:i])
            out.setdefault(folder, _folder(folder))
            if not recursive:
                break
        if recursive or len(parts) == 1:
            out[path] = _entry(path, data)
    return list(out.values())


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    server_version = "LocalHub/1.0"
    protocol_version = "HTTP/1.0"  # one request per connection: a stopped server really is unreachable

    def log_message(self, format, *args) -> None:  # keep pytest output quiet
        pass

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # ---------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, truncate: bool = False) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            # "truncate": promise len(body) bytes, send half, close => httpx2.RemoteProtocolError in the client.
            self.wfile.write(body[: len(body) // 2] if truncate else body)
        self.wfile.flush()
        self.close_connection = True

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        hub.requests.append(LoggedRequest(method, self.path, {k.lower(): v for k, v in self.headers.items()}))
        raw_path, query = urlsplit(self.path)[2:4]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            # Traversal guard on the fully decoded path ("%2e%2e", "%2F", "%5C" included) before any routing.
            if not valid_path(unquote(raw_path)[1:]):
                raise HubError(400, f"Invalid path {raw_path!r}")
            seg = [unquote(s) for s in raw_path[1:].split("/")]
            is_resolve = len(seg) >= 5 and seg[2] == "resolve"
            kinds = ("500", "truncate", "wrong_etag") if is_resolve and method == "GET" else \
                ("500", "wrong_etag") if is_resolve else ("500",)
            fault = hub._take_fault(method, unquote(raw_path), kinds)
            if fault == "500":
                raise HubError(500, "Internal Error (injected fault)")
            if is_resolve and method in ("GET", "HEAD"):
                return self._resolve("/".join(seg[:2]), seg[3], "/".join(seg[4:]), fault)
            self._api(method, seg, parse_qs(query), body)
        except HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            if err.commit:
                headers["X-Repo-Commit"] = err.commit  # lets the client cache ".no_exist" for EntryNotFound
            self._send(err.status, json.dumps({"error": err.message}).encode(), headers)

    # ---------------------------------------------------------------- /{repo_id}/resolve/{revision}/{path}
    def _resolve(self, repo_id: str, revision: str, path: str, fault: str | None) -> None:
        for value in (repo_id, revision, path):
            if not valid_path(value):
                raise HubError(400, f"Invalid path component {value!r}")
        sha, files = self.hub._lookup(repo_id, revision)
        if path not in files:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit=sha)
        data = files[path]
        etag = file_etag(path, data)
        if fault == "wrong_etag":  # a well-formed hash of the wrong kind/content
            etag = hashlib.sha256(b"wrong" + data).hexdigest() if is_lfs(path) else git_blob_sha1(b"wrong" + data)
        # file_download.get_hf_file_metadata reads X-Repo-Commit (-> snapshots/<sha>), X-Linked-Etag or ETag
        # (-> blobs/<etag>) and X-Linked-Size or Content-Length (-> expected size checked by http_get).
        headers = {"Content-Type": "application/octet-stream", "X-Repo-Commit": sha, "ETag": f'"{etag}"',
                   "Accept-Ranges": "bytes"}
        if is_lfs(path):
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        status, start, end = 200, 0, len(data)
        # file_download.http_get resumes after a broken stream with "Range: bytes=<already>-" and expects 206
        # with Content-Range (a 200 makes it restart from scratch).
        range_header = self.headers.get("Range")
        if range_header and self.command == "GET":
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            if match and match.group(1):
                start, end = int(match.group(1)), min(int(match.group(2) or len(data) - 1) + 1, len(data))
            elif match and match.group(2):
                start = max(len(data) - int(match.group(2)), 0)
            if not match or start >= end:
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        self._send(status, data[start:end], headers, truncate=fault == "truncate")

    # ---------------------------------------------------------------- /api/...
    def _api(self, method: str, seg: list[str], query: dict, body: bytes) -> None:
        hub = self.hub
        route = (method, *seg[:2])
        if route == ("GET", "api", "whoami-v2"):
            return self._json({"type": "user", "id": "local", "name": "local-user", "fullname": "Local User",
                               "orgs": [], "auth": {"type": "access_token",
                                                    "accessToken": {"displayName": "local", "role": "write"}}})
        if route == ("POST", "api", "validate-yaml"):  # HfApi._validate_yaml, called for README.md uploads
            return self._json({"errors": [], "warnings": []})
        if route == ("POST", "api", "repos") and seg[2:] == ["create"]:
            self._require_token()
            payload = json.loads(body or b"{}")
            if payload.get("type", "model") != "model":
                raise HubError(400, "only model repos are supported")
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else ""
            if not (valid_path(repo_id) and repo_id.count("/") == 1):
                raise HubError(400, f"Invalid repo name {repo_id!r} (use 'org/name')")
            if repo_id in hub.repos:  # create_repo(exist_ok=True) swallows exactly this 409
                raise HubError(409, "You already created this model repo")
            hub.create_repo(repo_id)
            return self._json({"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id})
        if len(seg) < 4 or seg[:2] != ["api", "models"]:
            raise HubError(404, f"Unknown endpoint {method} /{'/'.join(seg)}")
        repo_id, action = "/".join(seg[2:4]), (seg[4] if len(seg) > 4 else "")
        revision = seg[5] if len(seg) > 5 else "main"  # revisions arrive quoted with safe="" (refs%2Fpr%2F1)
        if method == "GET" and (action == "" or (action == "revision" and len(seg) == 6)):
            return self._model_info(repo_id, revision)
        if method == "GET" and action == "tree" and len(seg) >= 6:
            # HfApi.list_repo_tree (used by snapshot_download); a single page, so no "Link" header.
            _, files = hub._lookup(repo_id, revision)
            base = "/".join(seg[6:])
            if base and base in files or base and not any(p.startswith(base + "/") for p in files):
                raise HubError(404, f"Entry not found: {base}", "EntryNotFound")
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._json(_list(files, base, recursive))
        if method == "POST" and action == "paths-info" and len(seg) == 6:
            _, files = hub._lookup(repo_id, revision)  # HfApi.get_paths_info: form field "paths" (repeated)
            paths = parse_qs(body.decode()).get("paths", [])
            folders = {p.rsplit("/", 1)[0] for p in files if "/" in p}
            return self._json([_entry(p, files[p]) if p in files else _folder(p)
                               for p in paths if p in files or p in folders])
        if method == "POST" and action == "preupload" and len(seg) == 6:
            return self._preupload(repo_id, revision, body)
        if method == "POST" and action == "commit" and len(seg) == 6:
            return self._commit(repo_id, revision, query, body)
        raise HubError(404, f"Unknown endpoint {method} /{'/'.join(seg)}")

    def _require_token(self) -> None:
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            raise HubError(401, "Invalid credentials in Authorization header")

    def _model_info(self, repo_id: str, revision: str) -> None:
        # HfApi.model_info -> ModelInfo(**json); snapshot_download only needs "sha" (then lists the tree).
        sha, files = self.hub._lookup(repo_id, revision)
        siblings = [{"rfilename": p, "size": len(d), "blobId": git_blob_sha1(d)} for p, d in sorted(files.items())]
        for sib in siblings:
            if is_lfs(sib["rfilename"]):
                data = files[sib["rfilename"]]
                sib["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        self._json({"id": repo_id, "modelId": repo_id, "sha": sha, "private": False, "disabled": False,
                    "gated": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings})

    def _preupload(self, repo_id: str, revision: str, body: bytes) -> None:
        # _commit_api._fetch_upload_modes: uploadMode must be "regular" or "lfs"; "regular" means the content
        # travels base64 inside the commit NDJSON (no LFS / Xet transfer). "oid" = git sha1 of the remote file:
        # create_commit / the upload pipeline drop additions whose local git sha1 equals it (unchanged files).
        self._require_token()
        _, files = self.hub._lookup(repo_id, revision)
        out = []
        for item in json.loads(body)["files"]:
            if not valid_path(item["path"]):
                raise HubError(400, f"Invalid path {item['path']!r}")
            remote = files.get(item["path"])
            out.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False,
                        "oid": git_blob_sha1(remote) if remote is not None else None})
        self._json({"files": out, "commitOid": self.hub.resolve(repo_id, revision)})

    def _commit(self, repo_id: str, branch: str, query: dict, body: bytes) -> None:
        # _commit_api._send_commit: NDJSON lines {"key": "header"|"file"|"deletedFile"|"deletedFolder"|"lfsFile",
        # "value": {...}}; answer {"commitOid", "commitUrl"} (CommitInfo parses commitUrl up to "/commit/").
        self._require_token()
        if query.get("create_pr", ["0"])[0] == "1":
            raise HubError(400, "pull requests are not supported by the local hub")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "first NDJSON line must be the commit header")
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
            elif key == "deletedFile" and path in files:
                delete.append(path)
            elif key == "deletedFolder":
                delete.append(path)
            elif key == "deletedFile":
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            else:
                raise HubError(400, f"Unsupported commit operation {key!r} (the local hub only takes 'regular' "
                                    "base64 files)")
        sha = self.hub._commit(repo_id, branch, add, header.get("summary", ""), delete=tuple(delete))
        self._json({"success": True, "commitOid": sha, "commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}",
                    "hookOutput": ""})


def configure_client(monkeypatch, endpoint: str, hf_home: str | Path, *, offline: bool = False) -> Path:
    """Point the (already imported) huggingface_hub at ``endpoint`` with a private cache; return the hub cache.

    Sets the env vars (for subprocesses / fresh imports) AND the ``huggingface_hub.constants`` attributes that
    were computed from them at import time (the library always reads them as ``constants.X`` at call time).
    """
    from huggingface_hub import constants

    hf_home = Path(hf_home)
    cache = hf_home / "hub"
    endpoint = endpoint.rstrip("/")
    for name, value in {"HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(cache),
                        "HF_HUB_OFFLINE": "1" if offline else "0", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",  # hf_hub_url
        "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(cache), "HUGGINGFACE_HUB_CACHE": str(cache),
        "HF_ASSETS_CACHE": str(hf_home / "assets"), "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"), "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_HUB_OFFLINE": offline, "HF_HUB_DISABLE_TELEMETRY": True,
    }.items():
        monkeypatch.setattr(constants, name, value)
    return cache
