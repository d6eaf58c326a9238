"""Reporting: a run's results (bench.results) as its goals (goals), Markdown tables (tables, with tabulate), plots
(plots, matplotlib) and docs/benchmarks.md (page, from the jinja2 templates in templates/)."""
