"""The paper's three theoretical claims, measured on the trained models of a workdir.

- `config`: `TheoryConfig` (what a measurement depends on) and its resolution from the CLI;
- `inputs`: the reference run's preset, splits and scores;
- `alignment`: (a) mini-batch gradient alignment with the validation gradient;
- `attenuation`: (b) rank-averaging an informative score with an independent one;
- `selection`: (c) hard selection vs soft weighting (KL, ESS, dropped mass);
- `plots`: the three figures;
- `document`: THEORY.md, theory.json and `run`.

`experiments/theory.py` is the command-line script.
"""
