"""The generated part of the LaTeX report: every quoted number as a macro, every table, and
what is still missing.

    python -m lib report --results results/demo --runs results/demo/runs \\
        --data data/processed/demo --profile demo --out paper/generated/demo

    write        the `report` command: the loop that writes macros.tex, status.tex, tables/*.tex
                 and report.done from the sections
    sections/    one module per section of paper/report.tex (its inputs check, its "missing"
                 sentence, its macros, its tables); sections/__init__.py lists them in order
    section      what a section declares: Section, and its Table and Listing files
    study        the Study record: every input of the report, loaded once
    status       status.tex: the \\ifHave<Section> switches and the list of what is missing
    columns      summary.csv's numbers as the report shows them: metrics (from the registry
                 lib.evaluate.metrics.METRICS) and costs, their macros and table cells
    run_tables   tables with a row per run, split over as many floats as fit the page
    formatting   small helpers: nested lookups, run labels, method names, paths, distinct values

A new section is one new module in sections/ that declares SECTION, and one entry in
sections/__init__.py's list.
"""
