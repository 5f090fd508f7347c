"""The report of a workdir: tables, statistics, figures and animations of its finished runs.

- `loading`: finished runs, the reference run's preset, the score files the runs used;
- `tables`: the paper's table, every configuration, Spearman / AUROC / by-group score tables;
- `plots`: every figure and animation the loaded data allows;
- `document`: `build_report`, which writes REPORT.md.

`experiments/report.py` is the command-line script.
"""
