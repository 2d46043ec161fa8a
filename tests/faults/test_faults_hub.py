"""(c) Hub faults against the local hub server (tests/hub_server.py, the real huggingface_hub client):
500s, a dropped connection, a truncated body, a wrong ETag, a corrupt blob in the cache. No corrupt file
is ever accepted, every failure is one line with exit 2 on the CLI, and the repair path
(`zoo download TAG --force`) is shown to work."""

from __future__ import annotations

import hashlib

import pytest
from faultkit import assert_user_error
from hub_server import HubServer, configure_client
from test_weights import TAG, _publish, card_index, toy_folder  # noqa: F401 - pytest fixtures

import zoo
from zoo import weights as W


def _cached_weights(tmp_path):
    return sorted((tmp_path / "hf").rglob("snapshots/*/model.safetensors"))


def _accepted_files_match_the_card(tmp_path, card):
    """Every weights file the cache exposes either matches the card or is refused when loaded."""
    for path in _cached_weights(tmp_path):
        if hashlib.sha256(path.read_bytes()).hexdigest() != card["files"][W.WEIGHTS_FILE]["sha256"]:
            with pytest.raises(W.WeightsError, match="sha256 mismatch"):
                zoo.create("toy_mlp", pretrained=True)


@pytest.fixture
def hub(tmp_path, monkeypatch, toy_folder, card_index):  # noqa: F811
    _, folder = toy_folder
    import huggingface_hub.utils._http as http

    monkeypatch.setattr(http.time, "sleep", lambda s: None)  # the client's retry back-off (1+2+4+8+8 s)
    with HubServer() as server:
        configure_client(monkeypatch, server.url, tmp_path / "hf")
        _publish(server, folder)
        yield server


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_500_is_one_line_and_leaves_nothing(hub, cli, tmp_path, method):
    hub.set_fault("500", path_glob="*/model.safetensors", times=100, method=method)
    assert_user_error(cli("download", TAG), "500", "/resolve/main/model.safetensors")
    assert _cached_weights(tmp_path) == []


def test_server_gone_is_one_line(hub, cli, tmp_path):
    hub.stop()  # the server goes away: connection refused
    assert_user_error(cli("download", TAG), "127.0.0.1", "config.json", "Connection")
    assert _cached_weights(tmp_path) == []


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_connection_dropped_before_any_answer_is_one_line_and_no_file(hub, cli, tmp_path, method):
    hub.set_fault("drop", path_glob="*/model.safetensors", times=100, method=method)
    assert_user_error(cli("download", TAG), "model.safetensors")
    assert _cached_weights(tmp_path) == []
    hub.clear_faults()
    hub.set_fault("drop", path_glob="*/model.safetensors", times=1, method=method)
    first = cli("download", TAG)  # one drop: the client retries a GET; a HEAD fails once, in one line
    if first[0] != 0:
        assert_user_error(first, "Server disconnected")
    code, _, err = cli("download", TAG)  # and the next try succeeds, verified against the card
    assert code == 0, err


def test_truncated_body_every_time_is_one_line_and_no_file(hub, cli, tmp_path):
    hub.set_fault("truncate", path_glob="*/model.safetensors", times=100, method="GET")
    assert_user_error(cli("download", TAG), "model.safetensors", "peer closed connection")
    assert _cached_weights(tmp_path) == []


def test_truncated_body_once_is_resumed_and_verified(hub, cli, tmp_path, card_index):  # noqa: F811
    hub.set_fault("truncate", path_glob="*/model.safetensors", times=1, method="GET")
    code, out, err = cli("download", TAG)
    assert code == 0, err
    model = zoo.create("toy_mlp", pretrained=True)
    assert model.pretrained_cfg["sha256"] == card_index["files"][W.WEIGHTS_FILE]["sha256"]


def test_wrong_etag_never_gets_a_wrong_file_accepted(hub, cli, tmp_path, card_index):  # noqa: F811
    hub.set_fault("wrong_etag", path_glob="*/model.safetensors", times=100)
    code, _, err = cli("download", TAG)  # the client files the right bytes under a wrong name
    assert code in (0, 2) and "Traceback" not in err, err
    _accepted_files_match_the_card(tmp_path, card_index)


def test_a_file_differing_from_the_card_is_refused_on_the_cli(hub, cli, tmp_path, toy_folder):  # noqa: F811
    _, folder = toy_folder
    data = bytearray((folder / W.WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    hub.add_file(f"{W.HUB_ORG}/{TAG}", W.WEIGHTS_FILE, bytes(data))
    assert_user_error(cli("download", TAG), "sha256 mismatch", "--force")


def test_corrupt_cache_blob_is_refused_then_repaired_by_force(hub, cli, tmp_path, card_index):  # noqa: F811
    assert cli("download", TAG)[0] == 0
    (blob,) = [p.resolve() for p in _cached_weights(tmp_path)]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # bit rot in the cache
    blob.write_bytes(bytes(data))
    with pytest.raises(W.WeightsError, match=f"zoo download {TAG} --force"):
        zoo.create("toy_mlp", pretrained=True)
    assert_user_error(cli("download", TAG), "sha256 mismatch", f"zoo download {TAG} --force")
    code, out, _ = cli("verify", TAG)
    assert code == 1 and "MISMATCH" in out
    gets = len([r for r in hub.requests if r.method == "GET"])
    code, out, err = cli("download", TAG, "--force")  # the repair the error names
    assert code == 0, err
    assert len([r for r in hub.requests if r.method == "GET"]) > gets, "the repair must fetch from the server"
    model = zoo.create("toy_mlp", pretrained=True)
    assert model.pretrained_cfg["sha256"] == card_index["files"][W.WEIGHTS_FILE]["sha256"]
    code, out, _ = cli("verify", TAG)
    assert code == 0 and " ok " in out


def test_unknown_repo_and_revision_are_one_line(hub, cli):
    assert_user_error(cli("download", "hf-hub:org/nope"), "org/nope")
    assert_user_error(cli("download", f"hf-hub:{W.HUB_ORG}/{TAG}@no-such-rev"), "no-such-rev")
