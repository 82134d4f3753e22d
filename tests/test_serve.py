"""make serve: `transformers serve` on a run's merged export answers the official openai client,
streaming and not, with the study's own greedy answer; the vLLM command attaches the adapter."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from builders import REPO_ROOT, demo_config, quick_learning_overrides
from lib.errors import UserError
from lib.serve import check_port_free, vllm_server

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
def served(lora_run, lora_export, demo_data, tiny_model):
    """`python -m lib serve` of the run on a free loopback port, as `make serve` starts it; yields
    (base URL, model name) once it says it is ready, and stops it (and its server) afterwards."""
    port = free_port()
    settings = [f"--set={setting}" for setting in quick_learning_overrides(tiny_model)]
    command = [sys.executable, "-m", "lib", "serve", "--profile", "demo", "--method", "lora", *settings,
               "--run-dir", str(lora_run), "--data", str(demo_data), "--export-dir", str(lora_export),
               "--port", str(port), "--backend", "transformers"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)  # its own process group: the server goes with it
    try:
        yield f"http://127.0.0.1:{port}/v1", announced_model_name(process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_the_openai_client_gets_the_studys_greedy_answer(served, lora_run, demo_data, tiny_model):
    from openai import OpenAI

    from lib.export import first_test_questions, greedy_answers
    from lib.model import load_for_inference

    base_url, model_name = served
    config = demo_config(tiny_model)
    questions = first_test_questions(demo_data / "test.jsonl", 32)
    answers = greedy_answers(config, *load_for_inference(config, lora_run / "adapter"), questions)
    # a question the run answers with some text (after a few steps of training it ends some answers at once)
    messages, expected = next((messages, answer) for (_, messages), answer in zip(questions, answers) if answer)

    client = OpenAI(base_url=base_url, api_key="none")
    reply = client.chat.completions.create(model=model_name, messages=messages,
                                           max_tokens=config.eval.max_new_tokens)
    assert reply.choices[0].message.content.strip() == expected
    stream = client.chat.completions.create(model=model_name, messages=messages,
                                            max_tokens=config.eval.max_new_tokens, stream=True)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert streamed.strip() == expected


def test_a_port_in_use_is_refused_in_one_line():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot serve on 127.0.0.1:{port} .*choose another with PORT="):
            check_port_free("127.0.0.1", port)


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_vllm_serves_the_base_with_the_adapter_attached_and_greedy_by_default(method, tmp_path, tiny_model):
    config = demo_config(tiny_model, method)
    server = vllm_server(config, tmp_path / "runs" / f"{method}-900", "127.0.0.1", 8001)
    command = server.command
    adapter = tmp_path / "runs" / f"{method}-900" / "adapter"
    assert command[1:3] == ["serve", str(tiny_model)] and server.model_name == f"{method}-900"
    assert command[command.index("--lora-modules") + 1] == f"{method}-900={adapter}"
    assert "--enable-lora" in command and command[command.index("--max-lora-rank") + 1] == str(config.lora.r)
    assert command[command.index("--generation-config") + 1] == "vllm"  # never the model's sampling defaults
    greedy = json.loads(command[command.index("--override-generation-config") + 1])
    assert greedy == {"temperature": 0.0, "max_new_tokens": config.eval.max_new_tokens,
                      "repetition_penalty": config.eval.repetition_penalty}
    assert ("--quantization" in command) == (method == "qlora")  # 4-bit as trained and evaluated
    base = vllm_server(config, tmp_path / "runs" / "base", "127.0.0.1", 8001)
    assert "--enable-lora" not in base.command and base.model_name == str(tiny_model)
