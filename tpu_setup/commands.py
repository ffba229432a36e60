"""Pure builders for the gcloud commands and remote shell scripts of a Cloud TPU run.

Nothing here runs anything: every function returns an argv list (for `subprocess` or
`shlex.join`) or a shell script string (the `--command` of `gcloud compute tpus tpu-vm ssh`).
Validation raises `ValueError` naming the offending flag, so callers fail before printing.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence

# Runtime (software) versions for JAX, from https://cloud.google.com/tpu/docs/runtimes.
RUNTIME_V4_AND_OLDER = "tpu-ubuntu2204-base"
RUNTIME_V5E = "v2-alpha-tpuv5-lite"
RUNTIME_V5P = "v2-alpha-tpuv5"
RUNTIME_V6E = "v2-alpha-tpuv6e"

LIBTPU_FIND_LINKS = "https://storage.googleapis.com/jax-releases/libtpu_releases.html"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# The key JAX itself reads (jax/_src/clusters/cloud_tpu_cluster.py) to learn its process id.
WORKER_NUMBER_URL = (
    "http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number"
)
PROVISIONING = ("on-demand", "spot", "preemptible", "reserved")


@dataclasses.dataclass(frozen=True)
class Generation:
    """How one TPU generation names its slices.

    `suffix_counts` is "cores" (v2/v3/v4/v5p: the number after the dash counts TensorCores,
    2 per chip) or "chips" (v5e/v6e). `sizes` lists the valid suffixes, or is None when any
    multiple of `size_step` in [size_step, max_size] is valid.
    """

    runtime_version: str
    suffix_counts: str
    sizes: tuple[int, ...] | None = None
    size_step: int = 8
    max_size: int = 0
    chips_per_host: int = 4
    single_host_max_chips: int = 4  # a slice of at most this many chips is one VM


GENERATIONS: dict[str, Generation] = {
    "v2": Generation(RUNTIME_V4_AND_OLDER, "cores", sizes=(8, 32, 128, 256, 512)),
    "v3": Generation(RUNTIME_V4_AND_OLDER, "cores", sizes=(8, 32, 64, 128, 256, 512, 1024, 2048)),
    "v4": Generation(RUNTIME_V4_AND_OLDER, "cores", max_size=8192),
    "v5p": Generation(RUNTIME_V5P, "cores", max_size=17920),
    "v5litepod": Generation(
        RUNTIME_V5E, "chips", sizes=(1, 4, 8, 16, 32, 64, 128, 256), single_host_max_chips=8
    ),
    "v6e": Generation(RUNTIME_V6E, "chips", sizes=(1, 4, 8, 16, 32, 64, 128, 256), single_host_max_chips=8),
}
GENERATION_ALIASES = {"v5e": "v5litepod"}  # what people say -> what gcloud accepts


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """A validated accelerator type such as v4-32 or v5litepod-64."""

    generation: str
    size: int

    @property
    def name(self) -> str:
        return f"{self.generation}-{self.size}"

    @property
    def chips(self) -> int:
        gen = GENERATIONS[self.generation]
        return self.size // 2 if gen.suffix_counts == "cores" else self.size

    @property
    def hosts(self) -> int:
        """Number of TPU VM workers (JAX processes) of the slice."""
        gen = GENERATIONS[self.generation]
        if self.chips <= gen.single_host_max_chips:
            return 1
        return self.chips // gen.chips_per_host

    @property
    def runtime_version(self) -> str:
        return GENERATIONS[self.generation].runtime_version


def parse_accelerator(text: str) -> Accelerator:
    """Parses `v4-32`, `v5litepod-64` (or its alias `v5e-64`), ...; raises ValueError otherwise."""
    known = ", ".join(list(GENERATIONS) + [f"{a} (= {g})" for a, g in GENERATION_ALIASES.items()])
    match = re.fullmatch(r"(v[0-9][a-z]*)-([0-9]+)", text or "")
    if not match:
        raise ValueError(
            f"--accelerator_type={text!r} is not of the form <generation>-<size> "
            f"(e.g. v4-32, v5litepod-64); generations: {known}"
        )
    generation = GENERATION_ALIASES.get(match.group(1), match.group(1))
    size = int(match.group(2))
    gen = GENERATIONS.get(generation)
    if gen is None:
        raise ValueError(
            f"--accelerator_type={text!r}: unknown TPU generation {match.group(1)!r}; known: {known}"
        )
    unit = "TensorCores (2 per chip)" if gen.suffix_counts == "cores" else "chips"
    if gen.sizes is not None and size not in gen.sizes:
        raise ValueError(
            f"--accelerator_type={text!r}: {generation} sizes count {unit} and must be one of "
            f"{', '.join(map(str, gen.sizes))}"
        )
    if gen.sizes is None and not (size % gen.size_step == 0 and 0 < size <= gen.max_size):
        raise ValueError(
            f"--accelerator_type={text!r}: {generation} sizes count {unit} and must be a "
            f"multiple of {gen.size_step} up to {gen.max_size}"
        )
    return Accelerator(generation, size)


@dataclasses.dataclass(frozen=True)
class TpuSpec:
    """Which TPU: a plain TPU VM (`tpu-vm create`) or a queued resource holding one node
    named like the resource (`queued-resources create --node-id=<name>`)."""

    name: str
    project: str
    zone: str
    accelerator: Accelerator | None = None
    runtime_version: str | None = None
    provisioning: str = "on-demand"
    queued: bool = False
    service_account: str | None = None
    scopes: str | None = CLOUD_PLATFORM_SCOPE


def make_spec(
    *,
    name: str | None,
    project: str | None,
    zone: str | None,
    accelerator_type: str | None = None,
    runtime_version: str | None = None,
    provisioning: str = "on-demand",
    queued: bool = False,
    service_account: str | None = None,
    scopes: str | None = CLOUD_PLATFORM_SCOPE,
    need_accelerator: bool = False,
) -> TpuSpec:
    """Validates the resource flags and returns a TpuSpec; the default runtime version follows
    the accelerator generation. Raises ValueError naming the flag."""
    if not project:
        raise ValueError(
            "--project is required (or set CLOUDSDK_CORE_PROJECT): the GCP project id that "
            "holds the TPU quota, e.g. --project=my-project-123"
        )
    if not re.fullmatch(r"([a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]", project):
        raise ValueError(f"--project={project!r} is not a GCP project id (6-30 of a-z, 0-9, -)")
    if not zone:
        raise ValueError("--zone is required (or set CLOUDSDK_COMPUTE_ZONE), e.g. --zone=us-central2-b")
    if not re.fullmatch(r"[a-z]+-[a-z]+[0-9]+-[a-z]", zone):
        raise ValueError(f"--zone={zone!r} is not a zone such as us-central2-b or us-west4-a")
    if not name or not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise ValueError(
            f"--name={name!r} must start with a letter and use only a-z, 0-9 and '-' (at most 63 characters)"
        )
    if provisioning not in PROVISIONING:
        raise ValueError(f"--provisioning={provisioning!r}: choose one of {PROVISIONING}")
    if queued and provisioning == "preemptible":
        raise ValueError(
            "--provisioning=preemptible is only for plain TPU VMs; queued resources take "
            "--provisioning=spot (preemptible TPUs are the legacy form of spot)"
        )
    if need_accelerator and not accelerator_type:
        raise ValueError("--accelerator_type is required here, e.g. --accelerator_type=v4-32")
    accelerator = parse_accelerator(accelerator_type) if accelerator_type else None
    if runtime_version is None and accelerator is not None:
        runtime_version = accelerator.runtime_version
    return TpuSpec(
        name=name,
        project=project,
        zone=zone,
        accelerator=accelerator,
        runtime_version=runtime_version,
        provisioning=provisioning,
        queued=queued,
        service_account=service_account,
        scopes=scopes,
    )


# ---------------------------------------------------------------- resource life cycle


def _tpus(group: str, verb: str, name: str, spec: TpuSpec) -> list[str]:
    return [
        "gcloud", "compute", "tpus", group, verb, name,
        f"--project={spec.project}", f"--zone={spec.zone}",
    ]  # fmt: skip


def create_command(spec: TpuSpec) -> list[str]:
    """`tpu-vm create` or `queued-resources create` for the spec (accelerator required)."""
    if spec.accelerator is None or spec.runtime_version is None:
        raise ValueError("--accelerator_type is required to create a TPU")
    if spec.queued:
        cmd = _tpus("queued-resources", "create", spec.name, spec)
        cmd += [
            f"--node-id={spec.name}",
            f"--accelerator-type={spec.accelerator.name}",
            f"--runtime-version={spec.runtime_version}",
        ]
    else:
        cmd = _tpus("tpu-vm", "create", spec.name, spec)
        cmd += [f"--accelerator-type={spec.accelerator.name}", f"--version={spec.runtime_version}"]
    if spec.provisioning != "on-demand":
        cmd.append(f"--{spec.provisioning}")
    if spec.service_account:
        cmd.append(f"--service-account={spec.service_account}")
    if spec.scopes:
        cmd.append(f"--scopes={spec.scopes}")
    return cmd


def state_command(spec: TpuSpec) -> list[str]:
    """Prints one word: the queued resource state (ACCEPTED, WAITING_FOR_RESOURCES,
    PROVISIONING, ACTIVE, SUSPENDED, FAILED, ...) or the TPU VM state (CREATING, READY,
    PREEMPTED, ...)."""
    if spec.queued:
        return _tpus("queued-resources", "describe", spec.name, spec) + ["--format=value(state.state)"]
    return _tpus("tpu-vm", "describe", spec.name, spec) + ["--format=value(state)"]


def describe_command(spec: TpuSpec) -> list[str]:
    """Full description of the resource (and of the node, for a queued resource)."""
    group = "queued-resources" if spec.queued else "tpu-vm"
    return _tpus(group, "describe", spec.name, spec)


def delete_command(spec: TpuSpec) -> list[str]:
    """Deletes the TPU; for a queued resource `--force` also deletes its node."""
    if spec.queued:
        return _tpus("queued-resources", "delete", spec.name, spec) + ["--force", "--quiet"]
    return _tpus("tpu-vm", "delete", spec.name, spec) + ["--quiet"]


def ssh_command(spec: TpuSpec, script: str, worker: str = "all") -> list[str]:
    """Runs `script` with bash on the given workers ("all", "0", "1-3", ...) concurrently."""
    return _tpus("tpu-vm", "ssh", spec.name, spec) + [f"--worker={worker}", f"--command={script}"]


def scp_command(spec: TpuSpec, local: str, remote: str, worker: str = "all") -> list[str]:
    """Copies a local file to `remote` (relative to the home directory) on the workers."""
    return [
        "gcloud", "compute", "tpus", "tpu-vm", "scp", local, f"{spec.name}:{remote}",
        f"--project={spec.project}", f"--zone={spec.zone}", f"--worker={worker}",
    ]  # fmt: skip


# ---------------------------------------------------------------- remote layout and scripts


def remote_path(path: str) -> str:
    """Shell text for a path on the worker: relative paths live under $HOME (quoted so that
    spaces or `$` in the name are literal, `$HOME` itself expanded)."""
    if "~" in path:
        raise ValueError(f"remote path {path!r}: write paths relative to $HOME, without '~'")
    if path.startswith("/"):
        return shlex.quote(path)
    return '"$HOME"/' + shlex.quote(path)


@dataclasses.dataclass(frozen=True)
class RemoteLayout:
    """Where things live on every worker (relative paths are under $HOME)."""

    repo_dir: str = "sembridge-jax"
    venv: str = "sembridge-venv"
    log_dir: str = "sembridge-logs"

    @property
    def python(self) -> str:
        return remote_path(f"{self.venv}/bin/python")

    @property
    def pid_file(self) -> str:
        return remote_path(f"{self.log_dir}/train.pid")

    @property
    def exit_file(self) -> str:
        return remote_path(f"{self.log_dir}/exit_code")

    def log_file(self, worker_var: str = "$W") -> str:
        return remote_path(self.log_dir) + f'/worker-"{worker_var}".log'


WORKER_NUMBER = f"W=$(curl -s -H 'Metadata-Flavor: Google' {WORKER_NUMBER_URL})"
SOURCE_TARBALL = "sembridge-jax-src.tar.gz"  # remote name, under $HOME


def _script(*statements: str) -> str:
    return "; ".join(("set -e",) + statements)


def source_tarball_command(repo_root: str, tarball: str) -> list[str]:
    """Local: packs the working tree (tracked and untracked-not-ignored files, no .git) for
    `--source=scp`, so uncommitted edits travel too."""
    listing = f"git -C {shlex.quote(repo_root)} ls-files -z --cached --others --exclude-standard"
    pack = f"tar -czf {shlex.quote(tarball)} -C {shlex.quote(repo_root)} --null -T -"
    return ["bash", "-c", f"set -o pipefail; {listing} | {pack}"]


def install_script(
    layout: RemoteLayout,
    *,
    repo_url: str | None,
    ref: str = "main",
    python_version: str = "3.11",
    jax_spec: str = "jax[tpu]",
    torch_index: str | None = TORCH_CPU_INDEX,
    check: bool = True,
) -> str:
    """Worker script: fetch the code (git clone/fetch of `repo_url` at `ref`, or unpack the
    scp'd tarball when repo_url is None), make a Python `python_version` venv with uv (the TPU
    images ship Python 3.10, JAX needs >= 3.11), pip-install requirements.txt plus `jax_spec`
    with the libtpu find-links, and (check) print the TPU devices JAX sees."""
    repo = remote_path(layout.repo_dir)
    venv = remote_path(layout.venv)
    if repo_url:
        fetch = (
            f"if [ -d {repo}/.git ]; then git -C {repo} fetch --quiet origin {shlex.quote(ref)}; "
            f"else git clone --quiet {shlex.quote(repo_url)} {repo} && "
            f"git -C {repo} fetch --quiet origin {shlex.quote(ref)}; fi",
            f"git -C {repo} checkout --quiet --detach FETCH_HEAD",
        )
    else:
        fetch = (f"mkdir -p {repo}", f"tar -xzf {remote_path(SOURCE_TARBALL)} -C {repo}")
    uv_pip = f"python3 -m uv pip install --python {layout.python}"
    steps = [
        "python3 -m pip install --user --quiet --upgrade uv",
        *fetch,
        f"[ -x {layout.python} ] || python3 -m uv venv --python {shlex.quote(python_version)} {venv}",
        f"cd {repo}",
    ]
    if torch_index:
        # requirements.txt pins torch; PyPI's Linux wheel drags in CUDA, so take the CPU build.
        steps.append(
            f"{uv_pip} -r <(grep -E '^torch([=<>!~ ;]|$)' requirements.txt) "
            f"--index-url {shlex.quote(torch_index)}"
        )
    steps.append(f"{uv_pip} -r requirements.txt {shlex.quote(jax_spec)} -f {shlex.quote(LIBTPU_FIND_LINKS)}")
    if check:
        probe = (
            "import jax; jax.distributed.initialize(); "
            'print("jax", jax.__version__, "process", jax.process_index(), "of", '
            'jax.process_count(), "local devices", jax.local_device_count(), '
            '"global devices", jax.device_count())'
        )
        steps.append(f"{layout.python} -c {shlex.quote(probe)}")
    return _script(*steps)


def _split_gs(url: str, flag: str) -> tuple[str, str]:
    match = re.fullmatch(r"gs://([a-z0-9][-a-z0-9_.]{1,220}[a-z0-9])(/.*)?", url or "")
    if not match:
        raise ValueError(f"{flag}={url!r} is not a gs://bucket[/prefix] URL")
    return match.group(1), (match.group(2) or "/").strip("/")


def check_gs_url(url: str, flag: str) -> str:
    """Returns `url` without a trailing slash; raises ValueError (naming `flag`) unless gs://."""
    _split_gs(url, flag)
    return url.rstrip("/")


def upload_command(local_dir: str, gs_url: str) -> list[str]:
    """Local -> GCS: mirror a data or model folder into the bucket (re-runs copy only changes)."""
    return ["gcloud", "storage", "rsync", "--recursive", local_dir, check_gs_url(gs_url, "--src")]


def data_copy_script(gs_url: str, dest: str) -> str:
    """Worker script: mirror gs_url into `dest` on the local disk (idempotent)."""
    target = remote_path(dest)
    src = shlex.quote(check_gs_url(gs_url, "--src"))
    return _script(f"mkdir -p {target}", f"gcloud storage rsync --recursive {src} {target}")


GCSFUSE_INSTALL = (
    "command -v gcsfuse >/dev/null || { "
    'echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] '
    'https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -c -s) main" '
    "| sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null && "
    "curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg "
    "| sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null && "
    "sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse; }"
)


def data_mount_script(gs_url: str, dest: str) -> str:
    """Worker script: install gcsfuse if missing and mount gs_url read-only at `dest`."""
    bucket, prefix = _split_gs(gs_url, "--src")
    target = remote_path(dest)
    mount = ["gcsfuse", "--implicit-dirs", "-o", "ro"]
    if prefix:
        mount += ["--only-dir", prefix]
    mount_cmd = " ".join(shlex.quote(a) for a in [*mount, bucket]) + f" {target}"
    return _script(GCSFUSE_INSTALL, f"mkdir -p {target}", f"mountpoint -q {target} || {mount_cmd}")


def default_env(workdir: str) -> dict[str, str]:
    """Environment of every training process: unbuffered logs, TPU or fail (no silent CPU
    fallback), the multi-host switch train.py reads, and a compilation cache on GCS that
    makes relaunches after preemption skip most of the compile."""
    return {
        "PYTHONUNBUFFERED": "1",
        "JAX_PLATFORMS": "tpu",
        "SEMBRIDGE_DISTRIBUTED": "1",
        "JAX_COMPILATION_CACHE_DIR": f"{workdir}/jax_cache",
    }


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """`["K=V", ...]` -> dict; raises ValueError naming the bad --env item."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"--env={pair!r} is not KEY=VALUE")
        env[key] = value
    return env


def _stop_running(layout: RemoteLayout) -> str:
    # SIGTERM the whole process group (setsid made it ours) so JAX's preemption service can
    # checkpoint; SIGKILL after 60 s so the TPU is free for the new run.
    pid = f'"$(cat {layout.pid_file})"'
    return (
        f"if [ -f {layout.pid_file} ] && kill -0 {pid} 2>/dev/null; then "
        f"kill -TERM -- -{pid} 2>/dev/null || true; "
        f"for i in $(seq 60); do kill -0 {pid} 2>/dev/null || break; sleep 1; done; "
        f"kill -KILL -- -{pid} 2>/dev/null || true; fi"
    )


def _refuse_if_running(layout: RemoteLayout) -> str:
    return (
        f'if [ -f {layout.pid_file} ] && kill -0 "$(cat {layout.pid_file})" 2>/dev/null; then '
        'echo "worker $W: training is already running; pass --restart to replace it" >&2; '
        "exit 1; fi"
    )


def launch_script(
    layout: RemoteLayout,
    *,
    config: str,
    workdir: str,
    train_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    restart: bool = False,
    entry: Sequence[str] = ("train.py",),
) -> str:
    """Worker script: start `python <entry> --config <config> --workdir <workdir> ...` in the
    background (setsid nohup, survives the ssh session), appending to
    <log_dir>/worker-<N>.log, pid in train.pid, exit status in exit_code when it ends."""
    check_gs_url(workdir, "--workdir")
    train = shlex.join([*entry, "--config", config, "--workdir", workdir, *train_args])
    inner = f"{layout.python} {train}; echo $? > {layout.exit_file}"
    env_words = " ".join(shlex.quote(f"{k}={v}") for k, v in (env or {}).items())
    start = (
        f"env {env_words} setsid nohup bash -c {shlex.quote(inner)} "
        f">> {layout.log_file()} 2>&1 < /dev/null & echo $! > {layout.pid_file}"
    )
    return _script(
        f"mkdir -p {remote_path(layout.log_dir)}",
        WORKER_NUMBER,
        _stop_running(layout) if restart else _refuse_if_running(layout),
        f"rm -f {layout.exit_file}",
        f"cd {remote_path(layout.repo_dir)}",
        start,
        f'echo "worker $W: started pid $(cat {layout.pid_file}), log {layout.log_file()}"',
    )


def stop_script(layout: RemoteLayout) -> str:
    """Worker script: stop the training process (SIGTERM, then SIGKILL after 60 s)."""
    return _script(_stop_running(layout))


# ---------------------------------------------------------------- job status and logs

PROBE_PREFIX = "sembridge-job"


def probe_script(layout: RemoteLayout) -> str:
    """Worker script printing one line `sembridge-job worker=<N> state=<running|exited|absent>
    code=<exit status or -> | <last log line>` (parsed by parse_probe)."""
    pid = f'"$(cat {layout.pid_file})"'
    return _script(
        WORKER_NUMBER,
        "S=absent; C=-",
        f"if [ -f {layout.pid_file} ] && kill -0 {pid} 2>/dev/null; then S=running; "
        f"elif [ -f {layout.exit_file} ]; then S=exited; C=$(cat {layout.exit_file}); fi",
        f'echo "{PROBE_PREFIX} worker=$W state=$S code=$C | $(tail -n 1 {layout.log_file()} 2>/dev/null)"',
    )


@dataclasses.dataclass(frozen=True)
class WorkerJob:
    worker: int
    state: str  # running | exited | absent
    code: int | None
    last_line: str


def parse_probe(text: str) -> list[WorkerJob]:
    """Parses the probe lines (other ssh noise is ignored), sorted by worker."""
    jobs = []
    pattern = rf"{PROBE_PREFIX} worker=(\d+) state=(running|exited|absent) code=(-?\d+|-) \| ?(.*)"
    for line in text.splitlines():
        match = re.search(pattern, line)
        if match:
            code = None if match.group(3) == "-" else int(match.group(3))
            jobs.append(WorkerJob(int(match.group(1)), match.group(2), code, match.group(4)))
    return sorted(jobs, key=lambda j: j.worker)


def tail_script(layout: RemoteLayout, lines: int, follow: bool) -> str:
    """Worker script: last `lines` lines of this worker's log (`follow`: keep streaming)."""
    flags = f"-n {int(lines)}" + (" -F" if follow else "")
    return _script(WORKER_NUMBER, f"tail {flags} {layout.log_file()}")


def collect_logs_script(layout: RemoteLayout, gs_logs: str) -> str:
    """Worker script: copy this worker's log into gs_logs (one object per worker)."""
    dest = shlex.quote(check_gs_url(gs_logs, "--workdir") + "/")
    return _script(f"gcloud storage cp {remote_path(layout.log_dir)}/worker-*.log {dest}")


def download_logs_command(gs_logs: str, local_dir: str) -> list[str]:
    return ["gcloud", "storage", "rsync", "--recursive", check_gs_url(gs_logs, "--workdir"),
            local_dir]  # fmt: skip


# ---------------------------------------------------------------- watch-and-relaunch policy

QUEUED_PENDING = {"CREATING", "ACCEPTED", "WAITING_FOR_RESOURCES", "PROVISIONING", "DELETING"}
QUEUED_LOST = {"SUSPENDING", "SUSPENDED", "FAILED"}
VM_PENDING = {"CREATING", "STARTING", "RESTARTING", "REPAIRING", "REIMAGING", "DELETING"}
VM_LOST = {"PREEMPTED", "TERMINATED", "STOPPED", "STOPPING"}


def resource_health(state: str | None, queued: bool) -> str:
    """missing | pending | ready | lost (preempted or failed: delete and create again) |
    unknown, from the state word printed by state_command (None: not found)."""
    if state is None:
        return "missing"
    state = state.strip().upper()
    if state == ("ACTIVE" if queued else "READY"):
        return "ready"
    if state in (QUEUED_PENDING if queued else VM_PENDING):
        return "pending"
    if state in (QUEUED_LOST if queued else VM_LOST):
        return "lost"
    return "unknown"


def job_health(jobs: Sequence[WorkerJob], num_workers: int | None) -> str:
    """done (every worker exited 0) | running | absent (never launched on this VM: needs
    install + launch) | failed (some worker died or is missing: relaunch)."""
    if num_workers is not None and len(jobs) < num_workers:
        return "failed" if jobs else "absent"
    if not jobs:
        return "absent"
    if all(j.state == "exited" and j.code == 0 for j in jobs):
        return "done"
    if all(j.state == "running" for j in jobs):
        return "running"
    if all(j.state == "absent" for j in jobs):
        return "absent"
    return "failed"


def next_action(resource: str, job: str | None) -> str:
    """What watch does next: create | recreate | wait | setup_and_launch | relaunch | finish."""
    if resource == "missing":
        return "create"
    if resource == "lost":
        return "recreate"
    if resource != "ready":
        return "wait"
    return {
        "done": "finish",
        "running": "wait",
        "absent": "setup_and_launch",
        "failed": "relaunch",
    }[job or "absent"]
