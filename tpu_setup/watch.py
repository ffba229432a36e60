"""Watch a spot/queued TPU run and keep it going: poll the resource and the job; when the TPU
is preempted (queued resource SUSPENDED/FAILED, VM PREEMPTED) delete and create it again,
install, bring the data and launch; when the job dies, relaunch it. train.py resumes from
the latest Orbax checkpoint in --workdir by itself. Stops when every worker exited 0.

    python -m tpu_setup.watch --name=sembridge-v4 --project=my-project --zone=us-central2-b \
        --accelerator_type=v4-32 --queued --provisioning=spot \
        --repo_url=https://github.com/ORG/sembridge-jax.git \
        --data_src=gs://my-bucket/sembridge/data/ko --data_dest=data/ko \
        --config=configs/ko_splade.py --workdir=gs://my-bucket/sembridge/runs/ko-v4
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

from tpu_setup import cli
from tpu_setup import commands as C


@dataclasses.dataclass
class Plan:
    """Every command watch may run, built (and validated) up front."""

    spec: C.TpuSpec
    probe: list[str]
    recreate: list[list[str]]
    setup: list[list[str]]
    relaunch: list[str]
    teardown: list[list[str]]


def build_plan(args) -> Plan:
    spec = cli.spec_from_args(args, need_accelerator=True)
    layout = cli.layout_from_args(args)
    relaunch = cli.launch_command(spec, layout, args, restart=True)
    setup = cli.install_commands(spec, layout, args) + cli.data_commands(spec, args)
    return Plan(
        spec=spec,
        probe=C.ssh_command(spec, C.probe_script(layout)),
        recreate=[C.delete_command(spec), C.create_command(spec)],
        setup=setup + [relaunch],
        relaunch=relaunch,
        teardown=[C.delete_command(spec)] if args.teardown_when_done else [],
    )


def print_plan(runner: cli.Runner, plan: Plan) -> None:
    lost = "SUSPENDED/FAILED" if plan.spec.queued else "PREEMPTED/TERMINATED"
    runner.note("every --poll_seconds: resource state, then job state on every worker")
    runner.run_all([C.state_command(plan.spec), plan.probe])
    runner.note(f"resource {lost} (or missing: create only): delete and create it again")
    runner.run_all(plan.recreate)
    runner.note("resource ready, no job ran on it yet: install, data, launch")
    runner.run_all(plan.setup)
    runner.note("job died on some worker: relaunch (resumes from the workdir's checkpoint)")
    runner.run(plan.relaunch)
    if plan.teardown:
        runner.note("every worker exited 0: tear down")
        runner.run_all(plan.teardown)


def watch(runner: cli.Runner, plan: Plan, poll_seconds: float, max_relaunches: int) -> int:
    relaunches = 0
    while True:
        state = cli.query_state(runner, plan.spec)
        resource = C.resource_health(state, plan.spec.queued)
        job = None
        if resource == "ready":
            jobs = C.parse_probe(runner.capture(plan.probe).stdout)
            job = C.job_health(jobs, plan.spec.accelerator.hosts)
        action = C.next_action(resource, job)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} state={state} job={job} -> {action}", file=sys.stderr, flush=True)
        try:
            if action == "finish":
                runner.run_all(plan.teardown)
                return 0
            if action == "create":
                runner.run(plan.recreate[-1])
            elif action == "recreate":
                runner.run_all(plan.recreate)
            elif action == "setup_and_launch":
                runner.run_all(plan.setup)
            elif action == "relaunch":
                relaunches += 1
                if relaunches > max_relaunches:
                    print(f"giving up after {max_relaunches} relaunches", file=sys.stderr)
                    return 1
                runner.run(plan.relaunch)
        except subprocess.CalledProcessError as err:
            # Typically the TPU went away mid-command; the next poll sees its new state.
            print(f"command failed ({err.returncode}); retrying after the next poll",
                  file=sys.stderr)  # fmt: skip
        time.sleep(poll_seconds)


def make_parser():
    parser = cli.new_parser(__doc__)
    cli.add_resource_args(parser)
    cli.add_layout_args(parser)
    cli.add_install_args(parser)
    cli.add_data_args(parser, required=False)
    cli.add_launch_args(parser)
    parser.add_argument("--poll_seconds", type=float, default=300.0)
    parser.add_argument("--max_relaunches", type=int, default=20, help="job crashes tolerated")
    parser.add_argument("--teardown_when_done", action="store_true")
    return parser


def main(argv=None) -> int:
    parser = make_parser()
    args = cli.parse(parser, argv)
    plan = cli.build_or_exit(parser, lambda: build_plan(args))
    runner = cli.Runner(args.dry_run)
    if args.dry_run:
        print_plan(runner, plan)
        return 0
    return watch(runner, plan, args.poll_seconds, args.max_relaunches)


if __name__ == "__main__":
    sys.exit(main())
