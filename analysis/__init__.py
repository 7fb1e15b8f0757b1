"""Analysis of ``results/``: loads run folders, aggregates over seeds, draws the figures and writes the tables.

Reads files only (``metadata.json``, ``eval.csv``, ``train_metrics.csv``); never imports agent or env code.

* :mod:`analysis.load`: discover and validate run folders, return tidy DataFrames and the list of skipped runs;
* :mod:`analysis.stats`: mean with a 95% bootstrap CI over seeds, per-episode aggregation, choice of frames;
* :mod:`analysis.plot_returns`: CLI, learning curves and per-episode meta-test returns (PNG);
* :mod:`analysis.tables`: CLI, per-episode return tables (Markdown, CSV, LaTeX).
"""
