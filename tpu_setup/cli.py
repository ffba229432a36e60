"""Shared flags, validation and the runner of the tpu_setup scripts.

Each script builds ALL its commands first (so a bad flag fails before anything is printed or
run), then hands them to a Runner: `--dry_run` prints each command shell-quoted with
`shlex.join`, otherwise it echoes `+ <command>` to stderr and runs it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from tpu_setup import commands as C

REPO_ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the example commands of a script's docstring as written, shows defaults."""


def new_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    parser.add_argument(
        "--dry_run", action="store_true", help="print the exact commands instead of running them"
    )
    return parser


def add_resource_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("TPU resource")
    g.add_argument("--name", required=True, help="TPU VM name (= queued resource and node id)")
    g.add_argument(
        "--project",
        default=os.environ.get("CLOUDSDK_CORE_PROJECT"),
        help="GCP project id (default: $CLOUDSDK_CORE_PROJECT)",
    )
    g.add_argument(
        "--zone",
        default=os.environ.get("CLOUDSDK_COMPUTE_ZONE"),
        help="zone, e.g. us-central2-b (v4), us-west4-a (v5e) (default: $CLOUDSDK_COMPUTE_ZONE)",
    )
    g.add_argument("--accelerator_type", help="e.g. v4-8, v4-32, v5litepod-64 (alias v5e-64)")
    g.add_argument(
        "--runtime_version",
        help=f"default by generation: v4 and older {C.RUNTIME_V4_AND_OLDER}, v5e {C.RUNTIME_V5E}, "
        f"v5p {C.RUNTIME_V5P}, v6e {C.RUNTIME_V6E}",
    )
    g.add_argument("--provisioning", default="on-demand", choices=C.PROVISIONING)
    g.add_argument(
        "--queued", action="store_true", help="the TPU is (to be) a queued resource, not a plain VM"
    )
    g.add_argument("--service_account", help="service account of the workers (default: GCE's)")
    g.add_argument("--scopes", default=C.CLOUD_PLATFORM_SCOPE, help="OAuth scopes of the workers")


def add_layout_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("layout on the workers (relative paths are under $HOME)")
    defaults = C.RemoteLayout()
    g.add_argument("--repo_dir", default=defaults.repo_dir)
    g.add_argument("--venv", default=defaults.venv)
    g.add_argument("--log_dir", default=defaults.log_dir)


def add_install_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("install")
    g.add_argument(
        "--repo_url",
        help="git URL to clone on every worker; without it the local working tree is packed "
        "and scp'd (uncommitted edits included)",
    )
    g.add_argument("--ref", default="main", help="branch, tag or commit to check out (git)")
    g.add_argument("--tarball", default="/tmp/sembridge-jax-src.tar.gz", help="local pack (scp)")
    g.add_argument("--python_version", default="3.11", help="JAX needs Python >= 3.11")
    g.add_argument("--jax_spec", default="jax[tpu]", help="pip requirement for JAX with libtpu")
    g.add_argument(
        "--torch_index",
        default=C.TORCH_CPU_INDEX,
        help="index for the torch pin of requirements.txt ('' = PyPI, which pulls CUDA)",
    )
    g.add_argument("--no_check", action="store_true", help="skip the JAX device check")


def add_data_args(parser: argparse.ArgumentParser, required: bool) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--data_src", required=required, help="gs://bucket/prefix to bring to every worker")
    g.add_argument("--data_dest", default="data", help="where it lands on every worker")
    g.add_argument(
        "--data_mode",
        default="copy",
        choices=("copy", "mount"),
        help="copy: gcloud storage rsync to local disk; mount: read-only gcsfuse mount",
    )
    g.add_argument("--upload", help="local folder to rsync to --data_src first")


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training job (arguments after `--` go to train.py)")
    g.add_argument("--entry", default="train.py", help="what python runs, e.g. '-m sembridge_jax.train'")
    g.add_argument("--config", required=True, help="config file, relative to the repo")
    g.add_argument("--workdir", required=True, help="gs://bucket/path: checkpoints and metrics")
    g.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment")
    g.add_argument(
        "--no_default_env",
        action="store_true",
        help="drop PYTHONUNBUFFERED, JAX_PLATFORMS=tpu, SEMBRIDGE_DISTRIBUTED=1 and the "
        "GCS compilation cache",
    )


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses argv; everything after a bare `--` becomes `args.train_args`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.train_args = train_args
    return args


def build_or_exit(parser: argparse.ArgumentParser, build: Callable[[], T]) -> T:
    """Runs `build`; a ValueError becomes a usage error (exit 2, message on stderr)."""
    try:
        return build()
    except ValueError as err:
        parser.error(str(err))


def spec_from_args(args: argparse.Namespace, need_accelerator: bool = False) -> C.TpuSpec:
    return C.make_spec(
        name=args.name,
        project=args.project,
        zone=args.zone,
        accelerator_type=args.accelerator_type,
        runtime_version=args.runtime_version,
        provisioning=args.provisioning,
        queued=args.queued,
        service_account=args.service_account,
        scopes=args.scopes,
        need_accelerator=need_accelerator,
    )


def layout_from_args(args: argparse.Namespace) -> C.RemoteLayout:
    layout = C.RemoteLayout(repo_dir=args.repo_dir, venv=args.venv, log_dir=args.log_dir)
    for path in (layout.repo_dir, layout.venv, layout.log_dir):
        C.remote_path(path)  # validates
    return layout


def install_commands(spec: C.TpuSpec, layout: C.RemoteLayout, args: argparse.Namespace) -> list[list[str]]:
    """scp mode: pack + scp the tarball first; then the install script on every worker."""
    cmds = []
    if not args.repo_url:
        cmds.append(C.source_tarball_command(str(REPO_ROOT), args.tarball))
        cmds.append(C.scp_command(spec, args.tarball, C.SOURCE_TARBALL))
    script = C.install_script(
        layout,
        repo_url=args.repo_url,
        ref=args.ref,
        python_version=args.python_version,
        jax_spec=args.jax_spec,
        torch_index=args.torch_index or None,
        check=not args.no_check,
    )
    cmds.append(C.ssh_command(spec, script))
    return cmds


def data_commands(spec: C.TpuSpec, args: argparse.Namespace) -> list[list[str]]:
    """Optional upload, then copy (rsync) or mount the data on every worker."""
    if not args.data_src:
        return []
    cmds = [C.upload_command(args.upload, args.data_src)] if args.upload else []
    build = C.data_copy_script if args.data_mode == "copy" else C.data_mount_script
    cmds.append(C.ssh_command(spec, build(args.data_src, args.data_dest)))
    return cmds


def launch_command(
    spec: C.TpuSpec, layout: C.RemoteLayout, args: argparse.Namespace, restart: bool
) -> list[str]:
    workdir = C.check_gs_url(args.workdir, "--workdir")
    env = {} if args.no_default_env else C.default_env(workdir)
    env.update(C.parse_env(args.env))
    script = C.launch_script(
        layout,
        config=args.config,
        workdir=workdir,
        train_args=args.train_args,
        env=env,
        restart=restart,
        entry=shlex.split(args.entry),
    )
    return C.ssh_command(spec, script)


class Runner:
    """Prints (dry run) or runs commands; `capture` runs even read-only queries for real."""

    def __init__(self, dry_run: bool):
        self.dry_run = dry_run

    def note(self, text: str) -> None:
        print(f"# {text}", file=sys.stdout if self.dry_run else sys.stderr, flush=True)

    def run(self, argv: Sequence[str]) -> None:
        if self.dry_run:
            print(shlex.join(argv), flush=True)
            return
        print(f"+ {shlex.join(argv)}", file=sys.stderr, flush=True)
        subprocess.run(list(argv), check=True)

    def run_all(self, cmds: Sequence[Sequence[str]]) -> None:
        for argv in cmds:
            self.run(argv)

    def capture(self, argv: Sequence[str]) -> subprocess.CompletedProcess:
        if self.dry_run:
            raise RuntimeError("capture() is not available in a dry run")
        return subprocess.run(list(argv), capture_output=True, text=True)


def query_state(runner: Runner, spec: C.TpuSpec) -> str | None:
    """The resource state word, or None when the resource does not exist."""
    result = runner.capture(C.state_command(spec))
    if result.returncode == 0:
        return result.stdout.strip() or "UNKNOWN"
    if "NOT_FOUND" in result.stderr or "not found" in result.stderr.lower():
        return None
    print(result.stderr, file=sys.stderr)
    return "UNKNOWN"
