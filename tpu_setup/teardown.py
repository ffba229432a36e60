"""Tear down: delete the TPU VM, or the queued resource and its node (billing stops).
`--stop_only` just stops the training processes and keeps the TPU.

    python -m tpu_setup.teardown --name=sembridge-v4 --project=my-project --zone=us-central2-b \
        --queued [--dry_run]
"""

from __future__ import annotations

import sys

from tpu_setup import cli
from tpu_setup import commands as C


def main(argv=None) -> int:
    parser = cli.new_parser(__doc__)
    cli.add_resource_args(parser)
    cli.add_layout_args(parser)
    parser.add_argument("--stop_only", action="store_true", help="stop training, keep the TPU")
    args = cli.parse(parser, argv)

    def build():
        spec = cli.spec_from_args(args)
        if args.stop_only:
            return C.ssh_command(spec, C.stop_script(cli.layout_from_args(args)))
        return C.delete_command(spec)

    cli.Runner(args.dry_run).run(cli.build_or_exit(parser, build))
    return 0


if __name__ == "__main__":
    sys.exit(main())
