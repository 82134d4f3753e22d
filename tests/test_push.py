"""make push: the adapter (with a fresh card) or the merged export goes to the Hub through
huggingface_hub, which reads HF_ENDPOINT and HF_TOKEN; missing settings get one line."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from builders import config, write_run
from lib.cli import main
from lib.export import output_files
from lib.io import write_json


@pytest.fixture
def trained_run(tmp_path):
    runs = tmp_path / "results" / "runs"
    run_dir = write_run(runs, "lora-900", [1.0, 2.0])
    write_json(run_dir / "config.json", config("lora", "900", 42, "demo"))
    (run_dir / "adapter" / "training_args.bin").write_bytes(b"pickle")
    (tmp_path / "data").mkdir()
    return run_dir


@pytest.fixture
def fake_hub(monkeypatch):
    """HfApi.create_repo and upload_folder replaced by ones that record their arguments."""
    from huggingface_hub import CommitInfo, HfApi

    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return CommitInfo(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/1", commit_message="",
                          commit_description="", oid="1")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    return calls


def push(run_dir, *extra: str) -> None:
    main(["push", "--run-dir", str(run_dir), "--data", str(run_dir.parents[2] / "data"), *extra])


def test_the_adapter_is_pushed_with_its_card(trained_run, fake_hub, capsys):
    push(trained_run, "--repo", "alice/medqa-lora-900", "--private")
    (_, repo, created), (_, uploaded_to, upload) = fake_hub
    assert repo == uploaded_to == "alice/medqa-lora-900"
    assert created["exist_ok"] and created["private"]
    assert upload["folder_path"] == trained_run / "adapter"
    assert "training_args.bin" in upload["ignore_patterns"] and ".*" in upload["ignore_patterns"]
    card = (trained_run / "adapter" / "README.md").read_text(encoding="utf-8")
    assert yaml.safe_load(card.split("---\n")[1])["library_name"] == "peft"
    assert "https://huggingface.co/alice/medqa-lora-900/commit/1" in capsys.readouterr().out


def test_the_merged_model_is_pushed_from_the_export_only_when_intact(trained_run, fake_hub, tmp_path, capsys):
    export_dir = tmp_path / "results" / "export" / "lora-900"
    with pytest.raises(SystemExit):  # not exported yet: one line says how
        push(trained_run, "--repo", "alice/medqa", "--export-dir", str(export_dir))
    assert fake_hub == []
    export_dir.mkdir(parents=True)
    (export_dir / "model.safetensors").write_bytes(b"weights")
    write_json(export_dir / "export.json", {"run": "lora-900", "outputs": output_files(export_dir)})
    push(trained_run, "--repo", "alice/medqa", "--export-dir", str(export_dir))
    assert fake_hub[1][2]["folder_path"] == export_dir

    (export_dir / "model.safetensors").write_bytes(b"weigh")  # cut short since: never uploaded
    with pytest.raises(SystemExit):
        push(trained_run, "--repo", "alice/medqa", "--export-dir", str(export_dir))
    assert len(fake_hub) == 2
    assert "model.safetensors has 5 bytes, not the 7 written; `make export EXP=lora-900`" in capsys.readouterr().err


@pytest.mark.parametrize("repo, token, message", [
    ("alice/medqa", "", "no Hugging Face token: set HF_TOKEN"),
    ("medqa", "hf_test_token", "REPO='medqa': expected <user or organisation>/<name>"),
])
def test_a_missing_token_or_a_bad_repo_is_one_line(trained_run, fake_hub, monkeypatch, tmp_path, capsys,
                                                   repo, token, message):
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))  # no saved login
    with pytest.raises(SystemExit) as stopped:
        push(trained_run, "--repo", repo)
    assert stopped.value.code == 2 and fake_hub == []
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


class RefusingHub(BaseHTTPRequestHandler):
    """A hub on 127.0.0.1 that records each request and refuses it as the Hub refuses a token
    without write access."""
    requests: list[dict] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                              "body": json.loads(body or b"{}")})
        answer = json.dumps({"error": "You don't have the rights to create a model under the namespace"}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_hf_endpoint_and_hf_token_are_what_the_client_uses(trained_run, run_cli, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        finished = run_cli("push", "--run-dir", trained_run, "--data", tmp_path / "data", "--repo", "alice/medqa",
                           env={"HF_ENDPOINT": endpoint, "HF_TOKEN": "hf_test_token", "HF_HOME": str(tmp_path / "hf")})
    finally:
        server.shutdown()
        server.server_close()
    assert finished.returncode == 2
    assert finished.stderr.startswith(f"error: {endpoint}: pushing alice/medqa failed: 403")
    assert finished.stderr.count("\n") == 1
    request, = RefusingHub.requests
    assert request["path"] == "/api/repos/create" and request["authorization"] == "Bearer hf_test_token"
    assert request["body"]["name"] == "medqa"
