"""Show, stream or collect the training logs of the workers.

python -m tpu_setup.logs ... [--lines=50]            # last lines of every worker's log
python -m tpu_setup.logs ... --follow [--worker=0]   # stream one worker (Ctrl-C to stop)
python -m tpu_setup.logs ... --collect=logs/ --workdir=gs://my-bucket/sembridge/runs/ko-v4
"""

from __future__ import annotations

import sys

from tpu_setup import cli
from tpu_setup import commands as C


def build(args) -> list[list[str]]:
    spec = cli.spec_from_args(args)
    layout = cli.layout_from_args(args)
    if args.collect:
        if not args.workdir:
            raise ValueError("--collect needs --workdir=gs://...: logs travel through GCS")
        gs_logs = C.check_gs_url(args.workdir, "--workdir") + "/logs"
        return [
            C.ssh_command(spec, C.collect_logs_script(layout, gs_logs)),
            C.download_logs_command(gs_logs, args.collect),
        ]
    worker = args.worker or ("0" if args.follow else "all")
    return [C.ssh_command(spec, C.tail_script(layout, args.lines, args.follow), worker=worker)]


def main(argv=None) -> int:
    parser = cli.new_parser(__doc__)
    cli.add_resource_args(parser)
    cli.add_layout_args(parser)
    parser.add_argument("--lines", type=int, default=50)
    parser.add_argument("--follow", action="store_true", help="keep streaming (tail -F)")
    parser.add_argument("--worker", help="all, 0, 1-3, ... (default: all; 0 with --follow)")
    parser.add_argument("--collect", metavar="LOCAL_DIR", help="copy all logs here via GCS")
    parser.add_argument("--workdir", help="gs:// workdir of the run (for --collect)")
    args = cli.parse(parser, argv)
    cmds = cli.build_or_exit(parser, lambda: build(args))
    cli.Runner(args.dry_run).run_all(cmds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
