"""transformers' OpenAI-compatible server as `make serve` runs it where vLLM cannot (lib.serve starts it).

    python -m lib.serve_transformers results/demo/export/lora-600 --name lora-600 --port 8765

`transformers serve <folder>` (transformers 5.23) serves the model, but not as real clients need it:
- GET /v1/models lists the models of the Hugging Face cache instead of the one it serves, and is a
  500 where that cache folder does not exist (huggingface_hub's CacheNotFound), as on a fresh or
  offline machine: chat front-ends (Open WebUI, Chatbox, LangChain) list the models first, so they
  could not connect;
- the model's name is the path it was loaded from, and any other name is refused;
- an empty `messages` list is a 500, and a prompt longer than the model's context is accepted.
The command has no option for any of these. So this module runs the same server (the class behind
the command, transformers.cli.serve.Serve), with routes of its own in front of transformers' ones:

    GET  /v1/models, /v1/models/<name>   the served model, under the run's name
    POST /v1/chat/completions            checked (model name, messages, context), then transformers'
    POST /v1/completions, /v1/responses  model name checked, then transformers'

A request that cannot be answered is a 400 (404 for another model's name) in OpenAI's error shape
({"error": {"message", "type", "param", "code"}}), saying what is wrong and what the limit is.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

CHAT, COMPLETIONS, RESPONSES = "/v1/chat/completions", "/v1/completions", "/v1/responses"


class Refusal(Exception):
    """A request the server cannot answer: an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


class Front:
    """What transformers' routes need in front of them: the model's name, its context, its tokenizer."""

    def __init__(self, model: str, name: str):
        from transformers import AutoConfig, AutoTokenizer

        self.model, self.name = model, name
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        # the positions the model was trained on; None where the config does not say (no check then)
        self.context = getattr(AutoConfig.from_pretrained(model), "max_position_embeddings", None)
        self.created = int(Path(model).stat().st_mtime) if Path(model).exists() else 0

    def listing(self) -> dict:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "medqa-scaling"}

    def not_served(self, asked) -> Refusal:
        return Refusal(404, f"the model {asked!r} is not served here; this server serves {self.name!r} "
                            "(GET /v1/models)", "model", "model_not_found")

    def check_model(self, body: dict) -> None:
        """Requests name the run (or leave the model out); transformers knows the model by its path."""
        asked = body.get("model")
        if asked is not None and asked != self.name:
            raise self.not_served(asked)
        body["model"] = self.model

    def prompt_tokens(self, path: str, body: dict) -> int:
        """The request's prompt in tokens, rendered as transformers will render it."""
        if path == COMPLETIONS:
            prompt = body.get("prompt")
            if not isinstance(prompt, str) or not prompt:
                raise Refusal(400, "`prompt` must be a non-empty string", "prompt")
            return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        from transformers.cli.serving.chat_completion import ChatCompletionHandler
        from transformers.cli.serving.utils import Modality

        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Refusal(400, "`messages` must be a non-empty list of {role, content} objects", "messages")
        if not all(isinstance(message, dict) and isinstance(message.get("role"), str) for message in messages):
            raise Refusal(400, "every message must be an object with a `role` and a `content`", "messages")
        try:
            inputs = ChatCompletionHandler.get_processor_inputs_from_messages(messages, Modality.LLM)
            rendered = self.tokenizer.apply_chat_template(inputs, add_generation_prompt=True, tools=body.get("tools"),
                                                          tokenize=True, return_dict=True)
        except Exception as err:  # whatever the conversion or the template refuses is the request's fault
            raise Refusal(400, f"the messages do not fit the model's chat template: {err}", "messages") from None
        return len(rendered["input_ids"])

    def check_length(self, path: str, body: dict) -> None:
        """A prompt that, with the tokens asked for, is longer than the model's context is refused."""
        asked = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        if not isinstance(asked, int) or asked < 0:
            raise Refusal(400, f"max_tokens {asked!r}: expected a whole number of tokens", "max_tokens")
        prompt = self.prompt_tokens(path, body)
        if self.context is not None and prompt + asked > self.context:
            more = f" and max_tokens asks for {asked} more" if asked else ""
            raise Refusal(400, f"this model's context is {self.context} tokens, but the prompt takes {prompt}{more}; "
                               "shorten the messages or ask for fewer tokens", "messages", "context_length_exceeded")


def error_response(refusal: Refusal) -> JSONResponse:
    return JSONResponse({"error": {"message": str(refusal), "type": "invalid_request_error", "param": refusal.param,
                                   "code": refusal.code}}, status_code=refusal.status)


def put_in_front(app, front: Front) -> None:
    """Routes of this module answered before transformers' own: the same paths, checked first."""
    theirs = {route.path: route.endpoint for route in app.routes if isinstance(route, APIRoute)}
    router = APIRouter()

    @router.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [front.listing()]}

    @router.get("/v1/models/{name:path}")
    def model(name: str):
        return front.listing() if name == front.name else error_response(front.not_served(name))

    def forwarded(path: str, check_length: bool):
        async def endpoint(request: Request, body: dict):
            try:
                front.check_model(body)
                if check_length:  # tokenizing a long prompt takes a while: off the event loop
                    await run_in_threadpool(front.check_length, path, body)
            except Refusal as refusal:
                return error_response(refusal)
            return await theirs[path](request, body)
        return endpoint

    for path, check_length in ((CHAT, True), (COMPLETIONS, True), (RESPONSES, False)):
        if path in theirs:
            router.add_api_route(path, forwarded(path, check_length), methods=["POST"])
    theirs_count = len(app.router.routes)
    app.include_router(router)
    app.router.routes[:] = app.router.routes[theirs_count:] + app.router.routes[:theirs_count]


def serve(model: str, name: str, host: str, port: int) -> None:
    """transformers' server pinned to `model`, with this module's routes in front (blocks until stopped)."""
    import transformers.cli.serving.server as server_module
    from transformers.cli.serve import Serve

    front = Front(model, name)
    build_server = server_module.build_server

    def build_with_front(*args, **kwargs):
        app = build_server(*args, **kwargs)
        put_in_front(app, front)
        return app

    # Serve builds its app with this function (imported when it runs) and then runs it
    server_module.build_server = build_with_front
    Serve(force_model=model, host=host, port=port, device="auto", log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m lib.serve_transformers", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the model's folder (or hub id) that transformers loads")
    parser.add_argument("--name", required=True, help="the name clients ask for: the run's (lora-600, base)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    from lib.serve import die_with_parent

    die_with_parent(signal.SIGTERM)  # `make serve` gone (even killed with SIGKILL): uvicorn shuts down
    serve(args.model, args.name, args.host, args.port)


if __name__ == "__main__":
    main()
