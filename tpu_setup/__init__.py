"""Cloud TPU tooling: create, install, feed, launch, watch and tear down sembridge-jax runs.

Every script is `python -m tpu_setup.<step> ...` (or `tpu_setup/tpu.sh <step> ...`) and takes
`--dry_run` to print the exact gcloud commands instead of running them. The commands themselves
are built by the pure functions in `tpu_setup.commands`; `tpu_setup.cli` holds the shared flags
and the runner. See tpu_setup/README.md.
"""
