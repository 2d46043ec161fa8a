"""End-to-end tests of tests/hub_server.py with the REAL huggingface_hub client (no network but loopback).

How to point huggingface_hub at the local hub in a test (also for tests of zoo/weights.py)::

    from hub_server import HubServer, configure_client

    def test_x(monkeypatch, tmp_path):
        with HubServer() as hub:                                  # 127.0.0.1, random port
            cache = configure_client(monkeypatch, hub.url, tmp_path / "hf")
            sha = hub.add_files("org/model", {"config.json": b"{}", "model.safetensors": blob})
            hub.add_tag("org/model", "v1")                        # hub.set_fault("500" | "truncate" | ...)
            path = hf_hub_download("org/model", "model.safetensors", revision="v1")   # under `cache`
            HfApi(token="x").upload_folder(repo_id="org/model", folder_path=folder)   # writes need a token
        configure_client(monkeypatch, hub.url, tmp_path / "hf", offline=True)     # HF_HUB_OFFLINE=1

Why a helper and not just ``monkeypatch.setenv("HF_ENDPOINT", ...)``: huggingface_hub copies HF_ENDPOINT,
HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, ... into ``huggingface_hub.constants`` when it is first imported
(conftest.py sets HF_HUB_OFFLINE=1 before that), and reads ``constants.X`` at call time. ``configure_client``
sets the env vars (for subprocesses) and monkeypatches ENDPOINT, HUGGINGFACE_CO_URL_TEMPLATE (used by
``hf_hub_url``), HF_HOME, HF_HUB_CACHE, HF_ASSETS_CACHE, HF_XET_CACHE, HF_TOKEN_PATH, HF_HUB_OFFLINE.
Alternatively pass ``endpoint=hub.url`` and ``cache_dir=`` explicitly (offline mode still needs the patch).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from pathlib import Path

import pytest
from hub_server import HubServer, configure_client, git_blob_sha1
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

REPO = "org/model"
CONFIG_V1, CONFIG_V2 = b'{"arch": "toy", "v": 1}\n', b'{"arch": "toy", "v": 2}\n'
WEIGHTS = os.urandom(3000)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with HubServer() as server:
        configure_client(monkeypatch, server.url, tmp_path / "hf")
        yield server


def repo_cache(tmp_path: Path, repo_id: str = REPO) -> Path:
    return tmp_path / "hf" / "hub" / ("models--" + repo_id.replace("/", "--"))


def assert_cache_clean(tmp_path: Path, hub: HubServer, repo_id: str = REPO) -> None:
    """No partial download left; every snapshot file holds its commit's bytes; blobs are named by hash."""
    root = repo_cache(tmp_path, repo_id)
    assert not list(root.rglob("*.incomplete"))
    for blob in root.glob("blobs/*"):
        data = blob.read_bytes()
        assert blob.name in (hashlib.sha256(data).hexdigest(), git_blob_sha1(data)), blob
    for file in root.glob("snapshots/*/**/*"):
        if file.is_file():
            sha, name = file.relative_to(root / "snapshots").as_posix().split("/", 1)
            assert file.read_bytes() == hub.files(repo_id, sha)[name], file


def test_download_branch_tag_and_sha_then_from_cache_with_server_stopped(hub, tmp_path, monkeypatch):
    sha1 = hub.add_files(REPO, {"config.json": CONFIG_V1, "model.safetensors": WEIGHTS})
    hub.add_tag(REPO, "v1.0")
    sha2 = hub.add_file(REPO, "config.json", CONFIG_V2)
    cases = (("main", sha2, CONFIG_V2), ("v1.0", sha1, CONFIG_V1), (sha1, sha1, CONFIG_V1))
    for revision, sha, config in cases:
        for filename, data in (("config.json", config), ("model.safetensors", WEIGHTS)):
            path = Path(hf_hub_download(REPO, filename, revision=revision))
            assert path.read_bytes() == data
            assert path.parent == repo_cache(tmp_path) / "snapshots" / sha
    root = repo_cache(tmp_path)
    assert (root / "refs" / "main").read_text() == sha2 and (root / "refs" / "v1.0").read_text() == sha1
    # Blob names are the ETags: sha256 for the LFS-style file, git blob sha1 for text files.
    assert (root / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()).read_bytes() == WEIGHTS
    assert (root / "blobs" / git_blob_sha1(CONFIG_V1)).read_bytes() == CONFIG_V1
    assert not any("xet" in r.path for r in hub.requests)  # no Xet token asked: no X-Xet-* header served

    # Cached: a full sha needs no request at all, a branch only a HEAD (no GET).
    n = len(hub.requests)
    hf_hub_download(REPO, "model.safetensors", revision=sha1)
    assert len(hub.requests) == n
    hf_hub_download(REPO, "model.safetensors")
    assert [r.method for r in hub.requests[n:]] == ["HEAD"]
    snapshot = snapshot_download(REPO)  # model_info + tree listing; files already cached
    assert sorted(os.listdir(snapshot)) == ["config.json", "model.safetensors"]

    hub.stop()
    # Server gone (connection refused): the client falls back to refs/<branch> in its cache.
    assert Path(hf_hub_download(REPO, "config.json")).read_bytes() == CONFIG_V2
    assert Path(hf_hub_download(REPO, "config.json", revision="v1.0")).read_bytes() == CONFIG_V1
    assert Path(hf_hub_download(REPO, "config.json", local_files_only=True)).read_bytes() == CONFIG_V2
    configure_client(monkeypatch, hub.url, tmp_path / "hf", offline=True)  # HF_HUB_OFFLINE=1
    assert Path(hf_hub_download(REPO, "model.safetensors", revision="v1.0")).read_bytes() == WEIGHTS
    assert Path(snapshot_download(REPO)) == Path(snapshot)
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(REPO, "README.md")
    assert_cache_clean(tmp_path, hub)


def test_not_found_errors_map_to_client_exceptions(hub, tmp_path):
    sha = hub.add_file(REPO, "config.json", CONFIG_V1)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/missing", "config.json")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="no-such-branch")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "missing.json")
    assert (repo_cache(tmp_path) / ".no_exist" / sha / "missing.json").exists()  # needs X-Repo-Commit on 404


def test_500_once(hub, tmp_path):
    sha = hub.add_files(REPO, {"config.json": CONFIG_V1, "model.safetensors": WEIGHTS})
    # HEAD 500: the first metadata call never retries; with nothing cached the client makes a second
    # call with backoff (utils/_http.http_backoff), which succeeds.
    hub.set_fault("500", "*/config.json", times=1, method="HEAD")
    assert Path(hf_hub_download(REPO, "config.json")).read_bytes() == CONFIG_V1
    assert [r.method for r in hub.requests if r.path.endswith("/config.json")] == ["HEAD", "HEAD", "GET"]

    # GET 500: http_get only retries 408/429, so HfHubHTTPError(500) reaches the caller, nothing cached.
    hub.set_fault("500", "*/model.safetensors", times=1, method="GET")
    with pytest.raises(HfHubHTTPError) as err:
        hf_hub_download(REPO, "model.safetensors")
    assert err.value.response.status_code == 500 and "injected fault" in str(err.value)
    assert not (repo_cache(tmp_path) / "snapshots" / sha / "model.safetensors").exists()
    assert not (repo_cache(tmp_path) / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()).exists()
    assert_cache_clean(tmp_path, hub)
    assert Path(hf_hub_download(REPO, "model.safetensors")).read_bytes() == WEIGHTS  # fault cleared

    # Hub down but the file cached: the cached file is returned after a single failed HEAD.
    hub.set_fault("500", "*/model.safetensors", times=1)
    n = len(hub.requests)
    assert Path(hf_hub_download(REPO, "model.safetensors")).read_bytes() == WEIGHTS
    assert [r.method for r in hub.requests[n:]] == ["HEAD"]
    assert_cache_clean(tmp_path, hub)


@pytest.mark.parametrize("chunk_size", [None, 1024])
def test_truncated_body_is_resumed_or_restarted(hub, tmp_path, monkeypatch, chunk_size):
    data = os.urandom(64 * 1024)
    hub.add_file(REPO, "model.safetensors", data)
    if chunk_size:  # default 10 MiB chunks: the half-body never reaches the temp file, so no Range resume
        monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", chunk_size)
    hub.set_fault("truncate", "*/model.safetensors", times=1)
    # http_get catches httpx2.RemoteProtocolError, sleeps 1 s and retries (up to 5 times without progress).
    assert Path(hf_hub_download(REPO, "model.safetensors")).read_bytes() == data
    gets = [r for r in hub.requests if r.method == "GET"]
    assert len(gets) == 2 and "range" not in gets[0].headers
    if chunk_size:
        start = int(gets[1].headers["range"].removeprefix("bytes=").rstrip("-"))
        assert 0 < start <= len(data) // 2  # resumed from what had been written, server answered 206
    else:
        assert "range" not in gets[1].headers
    assert_cache_clean(tmp_path, hub)


def test_truncated_then_failing_download_leaves_no_file(hub, tmp_path, monkeypatch):
    data = os.urandom(64 * 1024)
    sha = hub.add_file(REPO, "model.safetensors", data)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    hub.set_fault("truncate", "*/model.safetensors", times=1)  # faults fire in order: the first GET is
    hub.set_fault("500", "*/model.safetensors", times=1, method="GET")  # cut, the resuming GET gets a 500
    with pytest.raises(HfHubHTTPError):
        hf_hub_download(REPO, "model.safetensors")
    assert not (repo_cache(tmp_path) / "snapshots" / sha / "model.safetensors").exists()  # (the dir exists)
    assert not list(repo_cache(tmp_path).glob("blobs/*"))
    assert_cache_clean(tmp_path, hub)
    assert Path(hf_hub_download(REPO, "model.safetensors")).read_bytes() == data


def test_wrong_etag_is_not_noticed_by_the_client(hub, tmp_path):
    hub.add_file(REPO, "model.safetensors", WEIGHTS)
    hub.set_fault("wrong_etag", "*/model.safetensors", times=1)
    path = Path(hf_hub_download(REPO, "model.safetensors"))
    # The client trusts the ETag as the blob name and never hashes the bytes: callers must check sha256.
    assert path.read_bytes() == WEIGHTS and path.resolve().name != hashlib.sha256(WEIGHTS).hexdigest()


def test_create_repo_and_upload_folder_then_download(hub, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    files = {"config.json": CONFIG_V1, "model.safetensors": WEIGHTS,
             "README.md": b"---\nlicense: mit\n---\n# toy model\n"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    api = HfApi(token="x")
    repo_url = api.create_repo("org/uploaded", exist_ok=True)
    assert repo_url.repo_id == "org/uploaded" and repo_url.startswith(hub.url)
    assert api.create_repo("org/uploaded", exist_ok=True).repo_id == "org/uploaded"
    with pytest.raises(HfHubHTTPError):
        api.create_repo("org/uploaded")  # 409
    with pytest.raises(HfHubHTTPError) as err:
        HfApi().upload_folder(repo_id="org/uploaded", folder_path=folder)  # no token anywhere -> 401
    assert err.value.response.status_code == 401

    info = api.upload_folder(repo_id="org/uploaded", folder_path=folder, commit_message="publish")
    assert info.oid == hub.resolve("org/uploaded") and info.commit_url.startswith(hub.url)
    assert hub.files("org/uploaded") == files
    for name, data in files.items():
        path = Path(hf_hub_download("org/uploaded", name))
        assert path.read_bytes() == data and path.parent.name == info.oid
    posts = [r.path for r in hub.requests if r.method == "POST"]
    assert {"/api/models/org/uploaded/preupload/main", "/api/models/org/uploaded/commit/main"} <= set(posts)
    assert not any("xet" in r.path.lower() or "lfs" in r.path.lower() for r in hub.requests)

    # Re-upload unchanged: preupload's "oid" lets the client skip the commit entirely.
    again = api.upload_folder(repo_id="org/uploaded", folder_path=folder)
    assert again.oid == info.oid == hub.resolve("org/uploaded")
    assert_cache_clean(tmp_path, hub, "org/uploaded")


def raw_request(hub: HubServer, method: str, path: str, body: bytes = b"", token: bool = True) -> int:
    """Send ``path`` byte for byte (http.client does not normalise '..' like httpx2 does)."""
    conn = http.client.HTTPConnection("127.0.0.1", int(hub.url.rsplit(":", 1)[1]), timeout=5)
    conn.request(method, path, body=body, headers={"Authorization": "Bearer x"} if token else {})
    status = conn.getresponse().status
    conn.close()
    return status


def test_path_traversal_is_refused(hub, tmp_path):
    sha = hub.add_files(REPO, {"config.json": CONFIG_V1, "sub/a.txt": b"a"})
    assert raw_request(hub, "GET", f"/{REPO}/resolve/main/sub/a.txt") == 200
    for path in ["/org/../resolve/main/config.json", f"/{REPO}/resolve/main/../../../etc/passwd",
                 f"/{REPO}/resolve/main/%2e%2e/%2e%2e/etc/passwd", f"/{REPO}/resolve/main/%2Fetc%2Fpasswd",
                 f"/{REPO}/resolve/main//etc/passwd", f"/{REPO}/resolve/main/sub%5C..%5Cconfig.json",
                 f"/{REPO}/resolve/main/./config.json", f"/{REPO}/resolve/..%2F..%2Fx/config.json",
                 "/api/models/org/%2e%2e/revision/main", f"/api/models/{REPO}/tree/main/sub/..",
                 "/%2Fetc/passwd/resolve/main/x", f"/{REPO}/resolve/main/sub/"]:
        assert raw_request(hub, "GET", path) == 400, path
        assert raw_request(hub, "HEAD", path) == 400, path
    for bad in ["../evil.txt", "/abs.txt", "a\\b.txt", "a//b.txt", "sub/./a.txt"]:
        header = {"key": "header", "value": {"summary": "x"}}
        line = {"key": "file", "value": {"path": bad, "content": "eA==", "encoding": "base64"}}
        ndjson = f"{json.dumps(header)}\n{json.dumps(line)}\n".encode()
        assert raw_request(hub, "POST", f"/api/models/{REPO}/commit/main", ndjson) == 400, bad
        preupload = json.dumps({"files": [{"path": bad, "sample": "", "size": 1}]}).encode()
        assert raw_request(hub, "POST", f"/api/models/{REPO}/preupload/main", preupload) == 400, bad
    create = json.dumps({"organization": "org", "name": ".."}).encode()
    assert raw_request(hub, "POST", "/api/repos/create", create) == 400
    assert hub.resolve(REPO) == sha and list(hub.repos) == [REPO]  # nothing was written

    # The client refuses these itself, before any request.
    n = len(hub.requests)
    with pytest.raises(ValueError, match="'..'"):
        hf_hub_download(REPO, "../config.json")
    with pytest.raises(ValueError):
        hf_hub_download(REPO, "/etc/passwd")
    with pytest.raises(HFValidationError):
        hf_hub_download("org/..", "config.json")
    with pytest.raises(ValueError):
        HfApi(token="x").upload_file(path_or_fileobj=b"x", path_in_repo="a/../../x", repo_id=REPO)
    assert len(hub.requests) == n

