"""Create a Cloud TPU VM, or a queued resource holding one (spot/reserved/on-demand).

    python -m tpu_setup.create --name=sembridge-v4 --project=my-project --zone=us-central2-b \
        --accelerator_type=v4-32 --queued --provisioning=spot --wait [--dry_run]
"""

from __future__ import annotations

import sys
import time

from tpu_setup import cli
from tpu_setup import commands as C


def main(argv=None) -> int:
    parser = cli.new_parser(__doc__)
    cli.add_resource_args(parser)
    parser.add_argument("--wait", action="store_true", help="queued: poll until the resource is ACTIVE")
    parser.add_argument("--poll_seconds", type=float, default=60.0)
    args = cli.parse(parser, argv)
    spec = cli.build_or_exit(parser, lambda: cli.spec_from_args(args, need_accelerator=True))
    create = C.create_command(spec)

    runner = cli.Runner(args.dry_run)
    runner.note(
        f"{spec.accelerator.name}: {spec.accelerator.chips} chips on {spec.accelerator.hosts} "
        f"worker(s), runtime {spec.runtime_version}, {spec.provisioning}"
    )
    runner.run(create)
    if not (args.wait and spec.queued):
        return 0
    if args.dry_run:
        runner.note("poll until ACTIVE (spot/queued requests can wait hours for capacity):")
        runner.run(C.state_command(spec))
        return 0
    while True:
        state = cli.query_state(runner, spec)
        health = C.resource_health(state, queued=True)
        print(f"{time.strftime('%H:%M:%S')} {spec.name}: {state}", file=sys.stderr, flush=True)
        if health == "ready":
            return 0
        if health in ("lost", "missing"):
            return 1
        time.sleep(args.poll_seconds)


if __name__ == "__main__":
    sys.exit(main())
