"""Status of the TPU (queued resource / VM state) and of the training job on every worker.

    python -m tpu_setup.status --name=sembridge-v4 --project=my-project --zone=us-central2-b \
        [--queued] [--dry_run]
"""

from __future__ import annotations

import sys

from tpu_setup import cli
from tpu_setup import commands as C


def main(argv=None) -> int:
    parser = cli.new_parser(__doc__)
    cli.add_resource_args(parser)
    cli.add_layout_args(parser)
    args = cli.parse(parser, argv)

    def build():
        spec = cli.spec_from_args(args)
        probe = C.ssh_command(spec, C.probe_script(cli.layout_from_args(args)))
        return spec, probe

    spec, probe = cli.build_or_exit(parser, build)
    runner = cli.Runner(args.dry_run)
    if args.dry_run:
        runner.run_all([C.state_command(spec), probe])
        return 0
    state = cli.query_state(runner, spec)
    print(f"{spec.name}: {state or 'NOT FOUND'}")
    if C.resource_health(state, spec.queued) != "ready":
        return 0
    jobs = C.parse_probe(runner.capture(probe).stdout)
    for job in jobs:
        code = "" if job.code is None else f" (exit {job.code})"
        print(f"  worker {job.worker}: {job.state}{code} | {job.last_line}")
    workers = spec.accelerator.hosts if spec.accelerator else None
    print(f"job: {C.job_health(jobs, workers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
