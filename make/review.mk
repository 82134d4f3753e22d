##@ Blind review of the answers
# Included by the Makefile: people rate the runs' answers side by side in the browser (lib/review/);
# their Bradley-Terry analysis, preference.json, is an input of the figures and the report.

NAME ?=#                    the rater to invite (make review-invite NAME=alice)

.PHONY: review review-invite review-export review-judge

review: $(SETUP) ## blind side-by-side rating of the runs' answers in the browser (HOST=, PORT=); Ctrl-C stops it
	$(CLI) review serve --runs $(RUNS) --db $(REVIEW_DB) --host $(HOST) --port $(PORT)

# The link points where the running review server listens (it records that beside its database);
# HOST= or PORT= given here overrides it.
review-invite: $(SETUP) ## print a rater's personal link: make review-invite NAME=alice (again: a new link)
	@test -n "$(NAME)" || { echo "error: say who: make review-invite NAME=<name>" >&2; exit 2; }
	@$(CLI) review invite --db $(REVIEW_DB) --name $(call shell_quote,$(NAME)) $(if $(filter-out file,$(origin HOST)),--host $(HOST)) \
		$(if $(filter-out file,$(origin PORT)),--port $(PORT))

review-export: $(SETUP) ## every vote so far -> results/<profile>/review/votes.csv
	$(CLI) review export --db $(REVIEW_DB) --out $(REVIEW)/votes.csv

review-judge: $(SETUP) ## the LLM judge (MEDQA_JUDGE_* settings) votes in both orders, kept apart as judge:<model>
	$(CLI) review judge --runs $(RUNS) --db $(REVIEW_DB)

# Bradley-Terry strengths, win rates, agreement: redone when the votes change, which shows in the
# database's -wal file while the server runs, and in the database itself once it stops.
$(REVIEW)/preference.json: $(SETUP) $(wildcard $(REVIEW_DB) $(REVIEW_DB)-wal)
	$(CLI) review analyse --db $(REVIEW_DB) --out $@
