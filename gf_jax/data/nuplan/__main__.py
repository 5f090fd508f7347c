"""Entry point of `python -m gf_jax.data.nuplan` (see `gf_jax.data.nuplan.cli`)."""

from gf_jax.data.nuplan.cli import main

raise SystemExit(main())
