"""Launch `python train.py --config ... --workdir gs://...` on all workers at once, in the
background (setsid nohup), one log per worker; extra train.py arguments go after `--`.

    python -m tpu_setup.launch --name=sembridge-v4 --project=my-project --zone=us-central2-b \
        --config=configs/ko_splade.py --workdir=gs://my-bucket/sembridge/runs/ko-v4 \
        -- --config.batch_size=128
"""

from __future__ import annotations

import sys

from tpu_setup import cli


def main(argv=None) -> int:
    parser = cli.new_parser(__doc__)
    cli.add_resource_args(parser)
    cli.add_layout_args(parser)
    cli.add_launch_args(parser)
    parser.add_argument("--restart", action="store_true", help="stop a running job first instead of refusing")
    args = cli.parse(parser, argv)
    cmd = cli.build_or_exit(
        parser,
        lambda: cli.launch_command(
            cli.spec_from_args(args), cli.layout_from_args(args), args, restart=args.restart
        ),
    )
    cli.Runner(args.dry_run).run(cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
