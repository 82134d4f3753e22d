##@ Using a run: chat, a merged model with its card, the Hub, an OpenAI-compatible API
# Included by the Makefile. The commands check the run themselves (an unknown or unfinished run is
# one line saying what to do), rather than make training it as a prerequisite.

EXP ?=#                     the run to chat with, export, push or serve (make chat EXP=lora-10k, or EXP=base)
HOST ?= 127.0.0.1#          where make review and make serve listen (0.0.0.0: every interface of this machine)
PORT ?= 8765#               their port
REPO ?=#                    make push: the Hub repository, <user>/<name>
MERGED ?=#                  make push MERGED=1: push the merged model of make export instead of the adapter
EXPORT = $(RESULTS)/export

.PHONY: chat export push serve

chat: $(SETUP) ## talk to a run in the terminal: make chat EXP=lora-10k (EXP=base: the untuned model; base-nf4: in NF4)
	@test -n "$(EXP)" || { echo "error: say which run: make chat EXP=<method>-<size> (or EXP=base)" >&2; exit 2; }
	$(CLI) chat $(CONFIG_ARGS) $(if $(filter base,$(EXP)),,--method $(if $(filter base-nf4,$(EXP)),$(NF4_METHOD),$(call method_of,$(EXP)))) \
		--run-dir $(RUNS)/$(EXP)

need_exp = @test -n "$(EXP)" || { echo "error: say which run: make $@ EXP=<method>-<size>$(1)" >&2; exit 2; }
METHOD_ARG = $(if $(filter base,$(EXP)),,--method $(call method_of,$(EXP)))

export: $(SETUP) ## merge a run's adapter into the 16-bit base + model card: make export EXP=lora-10k -> results/<profile>/export/<run>
	$(call need_exp)
	$(CLI) export $(CONFIG_ARGS) $(METHOD_ARG) --run-dir $(RUNS)/$(EXP) --data $(PROCESSED) --out $(EXPORT)/$(EXP)

push: $(SETUP) ## upload a run's adapter to the Hugging Face Hub (HF_TOKEN): make push EXP=lora-10k REPO=user/name (MERGED=1: the merged model)
	$(call need_exp)
	@test -n "$(REPO)" || { echo "error: say where to: make push EXP=$(EXP) REPO=<user>/<name>" >&2; exit 2; }
	$(CLI) push --run-dir $(RUNS)/$(EXP) --data $(PROCESSED) --repo $(REPO) $(if $(MERGED),--export-dir $(EXPORT)/$(EXP))

serve: $(SETUP) ## an OpenAI-compatible API on HOST:PORT: make serve EXP=lora-10k (EXP=base; vLLM on a GPU, else transformers serve)
	$(call need_exp, (or EXP=base))
	$(CLI) serve $(CONFIG_ARGS) $(METHOD_ARG) --run-dir $(RUNS)/$(EXP) --data $(PROCESSED) --export-dir $(EXPORT)/$(EXP) \
		--host $(HOST) --port $(PORT)
