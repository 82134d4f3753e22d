"""make serve: transformers' server on a run's merged export answers the official openai client as a
chat front-end drives it (list the models, pick the served one by the run's name, chat, stream) on
a machine without a Hugging Face cache, with the study's own greedy answer; what it cannot answer
is a 400 that says why; killing make stops the server; the vLLM command attaches the adapter."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import psutil
import pytest

from builders import REPO_ROOT, demo_config, quick_learning_overrides
from lib.errors import UserError
from lib.serve import check_port_free, start, stop, vllm_server

READY_TIMEOUT_S = 300  # loading a tiny model; generous for a CPU shared by other work


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def announced_model_name(process: subprocess.Popen) -> str:
    """The model name serve prints once its server answers (it reads stdout until then)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"serve exited before it was ready: {''.join(seen)}")
        seen.append(line)
        if "model name" in line:
            return line.split("model name ")[1].split(";")[0].strip("'")
    pytest.fail(f"serve was not ready in {READY_TIMEOUT_S} s: {''.join(seen)}")


@pytest.fixture
def made_serve(lora_run, lora_export, demo_data, tiny_model, tmp_path):
    """`make serve EXP=lora-64` on a free loopback port, on a machine whose Hugging Face cache does
    not exist (HF_HOME names no folder); yields (make's process, base URL, model name) once it says
    it is ready, and stops it (and its server) afterwards."""
    results, data = tmp_path / "results", tmp_path / "data" / "processed"
    results.mkdir()
    data.mkdir(parents=True)
    (results / "demo").symlink_to(lora_run.parent.parent)  # runs/lora-64 and export/lora-64
    (data / "demo").symlink_to(demo_data)
    port = free_port()
    command = ["make", "serve", "EXP=lora-64", "PROFILE=demo", f"RESULTS_DIR={results}",
               f"DATA_DIR={tmp_path / 'data'}", f"MODEL={tiny_model}",
               f"SET={' '.join(quick_learning_overrides(tiny_model))}", f"PORT={port}"]
    environment = {**os.environ, "HF_HOME": str(tmp_path / "no-hf-cache"), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=environment, start_new_session=True)
    try:
        yield process, f"http://127.0.0.1:{port}/v1", announced_model_name(process)
    finally:
        with_group_stopped(process)


def with_group_stopped(process: subprocess.Popen) -> None:
    """SIGTERM to make's process group (as a terminal's Ctrl-C reaches all of it), SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    process.stdout.close()


@pytest.mark.slow
def test_a_chat_front_end_lists_picks_chats_and_streams_without_a_hub_cache(made_serve, lora_run, demo_data,
                                                                           tiny_model):
    import openai

    from lib.export import first_test_questions, greedy_answers
    from lib.model import load_for_inference

    _, base_url, announced = made_serve
    config = demo_config(tiny_model)
    questions = first_test_questions(demo_data / "test.jsonl", 32)
    answers = greedy_answers(config, *load_for_inference(config, lora_run / "adapter"), questions)
    # a question the run answers with some text (after a few steps of training it ends some answers at once)
    messages, expected = next((messages, answer) for (_, messages), answer in zip(questions, answers) if answer)

    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)
    listed = [model.id for model in client.models.list()]
    assert listed == [announced] == ["lora-64"]  # the run's name, not a path
    picked = client.models.retrieve(listed[0]).id
    reply = client.chat.completions.create(model=picked, messages=messages, max_tokens=config.eval.max_new_tokens)
    assert reply.choices[0].message.content.strip() == expected
    stream = client.chat.completions.create(model=picked, messages=messages, max_tokens=config.eval.max_new_tokens,
                                            stream=True)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed.strip() == expected

    with pytest.raises(openai.BadRequestError, match="`messages` must be a non-empty list"):
        client.chat.completions.create(model=picked, messages=[])
    # the tiny model's context is 2,048 positions; this question alone takes about 20 times that
    with pytest.raises(openai.BadRequestError, match=r"this model's context is 2048 tokens, but the prompt takes \d+"):
        client.chat.completions.create(model=picked, messages=[{"role": "user", "content": "头痛" * 20_000}])
    with pytest.raises(openai.BadRequestError, match=r"context is 2048 tokens, .* max_tokens asks for 4096 more"):
        client.chat.completions.create(model=picked, messages=messages, max_tokens=4096)
    with pytest.raises(openai.NotFoundError, match="this server serves 'lora-64'"):
        client.chat.completions.create(model="gpt-4o", messages=messages)


@pytest.mark.slow
def test_killing_make_serve_stops_the_server_and_frees_its_port(made_serve):
    process, base_url, _ = made_serve
    port = int(base_url.rsplit(":", 1)[1].split("/")[0])
    started = psutil.Process(process.pid).children(recursive=True)  # lib serve and the server it started
    assert len(started) >= 2
    os.kill(process.pid, signal.SIGKILL)  # make alone, and with no chance to pass anything on
    gone, alive = psutil.wait_procs(started, timeout=60)
    assert alive == []
    check_port_free("127.0.0.1", port)


def test_stopping_ends_every_process_of_the_servers_group(monkeypatch):
    import lib.serve

    monkeypatch.setattr(lib.serve, "STOP_GRACE_S", 1)
    # a server that ignores SIGTERM and has started a process of its own (as vLLM's engine)
    server = start(["bash", "-c", "trap '' TERM; sleep 600 & wait"])
    deadline = time.monotonic() + 30
    while not psutil.Process(server.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    [child] = psutil.Process(server.pid).children()
    stop(server)
    assert server.returncode == -signal.SIGKILL
    child.wait(timeout=10)
    assert not child.is_running()


def test_a_port_in_use_is_refused_in_one_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot serve on 127.0.0.1:{port} .*choose another with PORT="):
            check_port_free("127.0.0.1", port)


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_vllm_serves_the_base_with_the_adapter_attached_and_greedy_by_default(method, tmp_path, untrained_tiny_model):
    config = demo_config(untrained_tiny_model, method)
    server = vllm_server(config, tmp_path / "runs" / f"{method}-900", "127.0.0.1", 8001)
    command = server.command
    adapter = tmp_path / "runs" / f"{method}-900" / "adapter"
    assert command[1:3] == ["serve", str(untrained_tiny_model)] and server.model_name == f"{method}-900"
    assert command[command.index("--lora-modules") + 1] == f"{method}-900={adapter}"
    assert "--enable-lora" in command and command[command.index("--max-lora-rank") + 1] == str(config.lora.r)
    assert command[command.index("--generation-config") + 1] == "vllm"  # never the model's sampling defaults
    greedy = json.loads(command[command.index("--override-generation-config") + 1])
    assert greedy == {"temperature": 0.0, "max_new_tokens": config.eval.max_new_tokens,
                      "repetition_penalty": config.eval.repetition_penalty}
    assert ("--quantization" in command) == (method == "qlora")  # 4-bit as trained and evaluated
    assert command[command.index("--served-model-name") + 1] == "base"  # the untuned model, named as the study does
    base = vllm_server(config, tmp_path / "runs" / "base", "127.0.0.1", 8001)
    assert "--enable-lora" not in base.command and base.model_name == "base"
