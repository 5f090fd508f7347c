"""The attribution benchmark: do the valuation scores predict what retraining does?

- `config`: `AttributionConfig` (what a benchmark depends on; its identity and random streams);
- `layout`: the workdir of small outputs and the scratch folder of checkpoints;
- `subsets`: the random subsets' masks and the removals by score or at random;
- `outcomes`: every validation scenario's loss and errors under trained parameters;
- `retrain`: one resumable retrain and its outcome files;
- `scorers`: every scorer, computed once from the full-data reference runs;
- `benchmark`: the stages in order (data, references, scores, retrains);
- `lds`: the linear datamodeling score and its bootstrap interval;
- `noise`: AUROC and found-fraction of the injected corrupted scenarios;
- `analysis`: every reported number, from the workdir alone;
- `anchors`, `figure`, `document`: the published numbers, the removal curves, the report.

`experiments/attribute.py` is the command-line script.
"""
