"""Install sembridge-jax on every worker of a TPU: code (git clone or scp of the working
tree), a Python 3.11 venv, requirements.txt and jax[tpu] (libtpu find-links), then a JAX
device check.

    python -m tpu_setup.install --name=sembridge-v4 --project=my-project --zone=us-central2-b \
        [--repo_url=https://github.com/ORG/sembridge-jax.git --ref=main] [--dry_run]
"""

from __future__ import annotations

import sys

from tpu_setup import cli


def main(argv=None) -> int:
    parser = cli.new_parser(__doc__)
    cli.add_resource_args(parser)
    cli.add_layout_args(parser)
    cli.add_install_args(parser)
    args = cli.parse(parser, argv)
    cmds = cli.build_or_exit(
        parser,
        lambda: cli.install_commands(cli.spec_from_args(args), cli.layout_from_args(args), args),
    )
    cli.Runner(args.dry_run).run_all(cmds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
