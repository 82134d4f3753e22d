"""Serve a run (or the untuned base model) behind an OpenAI-compatible API on this machine.

    python -m lib serve --profile demo --method lora --run-dir results/demo/runs/lora-600 \\
        --data data/processed/demo --export-dir results/demo/export/lora-600 --port 8765
    make serve EXP=lora-600 PROFILE=demo          (EXP=base: the untuned model; HOST=, PORT=)

Two existing servers, chosen like the evaluation's backend; on both, clients ask for the model by
the run's name (`lora-600`, `base` for the untuned model) and GET /v1/models lists it:
- `vllm serve` where vLLM and a GPU are present: the base model (named base) with the run's
  adapter attached (--enable-lora --lora-modules <run>=<adapter>), 4-bit for a QLoRA run as it was
  trained and evaluated. Its default decoding is the study's greedy one (--override-generation-config).
- transformers' server elsewhere (lib.serve_transformers: `transformers serve` with the model
  listed and named as the run, and requests it cannot answer refused with a 400). It takes no
  adapter, so it serves the run's merged export (lib.export, made first where it is missing, out
  of date or damaged), whose generation_config.json is the study's greedy decoding. It answers
  with at most 1,024 new tokens unless a request says max_tokens.

The command waits until the server answers /health, then prints the URL and the model name that
requests must give. The server runs in a process group of its own, which is ended whole (SIGTERM,
then SIGKILL after STOP_GRACE_S) when this command ends: Ctrl-C, SIGTERM or SIGHUP (make killed,
the terminal closed), the server exiting, or, on Linux, make itself killed (even with SIGKILL: the
kernel tells this process, PR_SET_PDEATHSIG). Chat requests are rendered with the model's own
chat template; send the study's system prompt for the answers it evaluated.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lib.config import BASE_RUN
from lib.errors import UserError
from lib.io import REPO_ROOT

BACKENDS = ("auto", "vllm", "transformers")
LOOPBACK = "127.0.0.1"
EVERY_ADDRESS = ("0.0.0.0", "::", "")
STOP_GRACE_S = 15  # a server gets this long to stop before it is killed
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class Server:
    """What to start, and what a client names in its requests."""
    command: list[str]
    model_name: str
    what: str  # for the user: which model is served, and how


def executable(name: str) -> str:
    """A command installed into this Python's environment (the venv's bin/)."""
    return str(Path(sys.executable).parent / name)


def vllm_server(config, run_dir: Path, host: str, port: int) -> Server:
    """`vllm serve` of the base with the run's adapter, greedy by default as the evaluation decodes."""
    from lib.model import compute_dtype, dtype_name, model_location

    base = config.model.name_or_path
    greedy = {"temperature": 0.0, "max_new_tokens": config.eval.max_new_tokens,
              "repetition_penalty": config.eval.repetition_penalty}
    command = [executable("vllm"), "serve", model_location(base), "--host", host, "--port", str(port),
               "--served-model-name", BASE_RUN, "--dtype", dtype_name(compute_dtype(config.model.dtype)),
               "--generation-config", "vllm", "--override-generation-config", json.dumps(greedy)]
    if config.quantization.load_in_4bit:
        command += ["--quantization", "bitsandbytes"]
    if run_dir.name == BASE_RUN:
        return Server(command, BASE_RUN, f"{base} (vLLM)")
    command += ["--enable-lora", "--lora-modules", f"{run_dir.name}={run_dir / 'adapter'}",
                "--max-lora-rank", str(config.lora.r)]
    return Server(command, run_dir.name, f"{run_dir.name}: {base} with its adapter (vLLM)")


def transformers_server(config, run_dir: Path, data_dir: Path, export_dir: Path, host: str, port: int) -> Server:
    """transformers' server (lib.serve_transformers) pinned to one model: the run's merged export, or the base."""
    from transformers.utils.import_utils import is_serve_available

    from lib.model import model_location

    if not is_serve_available():
        raise UserError("transformers serve needs fastapi, uvicorn and openai: pip install -e '.[serve]'")
    if run_dir.name == BASE_RUN:
        model, what = model_location(config.model.name_or_path), f"{config.model.name_or_path} (transformers serve)"
    else:
        from lib.export import export

        export(config, run_dir, data_dir, export_dir)
        model, what = str(export_dir.resolve()), f"{run_dir.name}: its merged export (transformers serve)"
    command = [sys.executable, "-m", "lib.serve_transformers", model, "--name", run_dir.name,
               "--host", host, "--port", str(port)]
    return Server(command, run_dir.name, what)


def check_port_free(host: str, port: int) -> None:
    """A port another server holds would answer the readiness probe: refuse it before starting."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # as the servers bind: a port whose last connections are still closing (TIME_WAIT) is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise UserError(f"cannot serve on {host}:{port} ({err.strerror}); choose another with PORT=") from None


def http_url(host: str, port: int, path: str = "") -> str:
    """An address a client can open: a server listening on every address is reached by this machine's name."""
    address = socket.gethostname() if host in EVERY_ADDRESS else host
    return f"http://{f'[{address}]' if ':' in address else address}:{port}{path}"


def probe_url(host: str, port: int) -> str:
    """The health endpoint both servers have; a server listening on all addresses is probed on loopback."""
    return http_url(LOOPBACK if host in EVERY_ADDRESS else host, port, "/health")


def wait_until_ready(process: subprocess.Popen, url: str) -> None:
    """Poll /health until it answers 200; loading a 3B model takes minutes, so no deadline, but a
    server that exits is reported at once."""
    while process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise UserError(f"the server exited with status {process.returncode} before it was ready (its output is above)")


def start(command: list[str]) -> subprocess.Popen:
    """The server in a process group of its own (a new session), so that stopping it reaches every
    process it starts (vLLM's engine processes too), and a Ctrl-C meant for make reaches it only
    through this process."""
    return subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """End the server's whole process group: SIGTERM, SIGKILL after STOP_GRACE_S, and SIGKILL for
    whatever of the group outlived its leader. A second Ctrl-C or SIGTERM meanwhile waits: it would
    cut this short."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP (a service manager, make killed, the terminal closed) end this process
    through its `finally`, so the server it started is stopped too; on Linux, so does the end of
    the process that started this one (make, even killed with SIGKILL), taken as a hangup. A
    signal this process was started ignoring stays ignored (`nohup make serve &` outlives the
    terminal)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))
    die_with_parent(signal.SIGHUP)


def die_with_parent(signum: int) -> None:
    """Linux: the kernel sends this process `signum` when the process that started it ends, however
    it ends (SIGKILL too)."""
    if sys.platform != "linux":
        return
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # it ended before the request took effect
        os.kill(os.getpid(), signum)


def serve(server: Server, host: str, port: int) -> None:
    process = start(server.command)
    try:
        wait_until_ready(process, probe_url(host, port))
        url = http_url(host, port, "/v1")
        print(f"serve: {server.what} at {url}\n"
              f"serve: model name {server.model_name!r}; e.g. OpenAI(base_url={url!r}, api_key='none')"
              f".chat.completions.create(model={server.model_name!r}, messages=[...]); Ctrl-C stops it",
              flush=True)
        status = process.wait()
        raise UserError(f"the server stopped by itself with status {status} (its output is above)")
    except KeyboardInterrupt:
        pass
    finally:
        stop(process)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.arguments import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--run-dir", type=Path, required=True,
                        help="results/<profile>/runs/<run>, or .../base for the untuned model")
    parser.add_argument("--data", type=Path, required=True, help="the processed data (the export's check and card)")
    parser.add_argument("--export-dir", type=Path, required=True,
                        help="results/<profile>/export/<run>: what transformers serve serves (made if missing)")
    parser.add_argument("--host", default=LOOPBACK,
                        help=f"address to listen on (default {LOOPBACK}: this machine only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="vllm (a GPU with vLLM), transformers, or auto: vllm where it can run")


def run(args: argparse.Namespace) -> None:
    from lib.arguments import config_from_args
    from lib.evaluate.generate import choose_backend
    from lib.export import check_trained

    exit_on_signals()  # from the start: an export made first is stopped cleanly too
    if args.run_dir.name != BASE_RUN:
        check_trained(args.run_dir)
        if args.method is None:
            raise UserError("serve needs --method for a trained run (EXP=base for the untuned model)")
    config = config_from_args(args)
    check_port_free(args.host, args.port)
    if choose_backend(args.backend, "--backend ") == "vllm":
        server = vllm_server(config, args.run_dir, args.host, args.port)
    else:
        server = transformers_server(config, args.run_dir, args.data, args.export_dir, args.host, args.port)
    serve(server, args.host, args.port)
