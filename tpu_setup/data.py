"""Bring data (or model folders) from GCS to every worker: rsync to local disk or a read-only
gcsfuse mount; optionally upload a local folder to GCS first.

    python -m tpu_setup.data --name=sembridge-v4 --project=my-project --zone=us-central2-b \
        --upload=data/ko --data_src=gs://my-bucket/sembridge/data/ko --data_dest=data/ko
"""

from __future__ import annotations

import sys

from tpu_setup import cli


def main(argv=None) -> int:
    parser = cli.new_parser(__doc__)
    cli.add_resource_args(parser)
    cli.add_data_args(parser, required=True)
    args = cli.parse(parser, argv)
    cmds = cli.build_or_exit(parser, lambda: cli.data_commands(cli.spec_from_args(args), args))
    cli.Runner(args.dry_run).run_all(cmds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
