"""Entry point of `python -m gf_jax.data.real_samples` (see `gf_jax.data.real_samples.preview`)."""

from gf_jax.data.real_samples.preview import main

raise SystemExit(main())
