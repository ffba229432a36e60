"""A small threaded HTTP server that answers like the Hugging Face Hub, for offline tests.

It implements the endpoints that huggingface_hub 2.x and datasets 5.x call (read from their source,
huggingface_hub/hf_api.py, file_download.py, utils/_http.py, datasets/load.py):

  GET  /api/{models,datasets}/{id}[/revision/{rev}]        repo info: sha, siblings (+ sizes with ?blobs=true)
  GET  /api/{models,datasets}/{id}/tree/{rev}[/{path}]     listing (?recursive=, ?expand=), one page, no Link
  POST /api/{models,datasets}/{id}/paths-info/{rev}        form fields paths=..., expand=...
  HEAD|GET /{id}/resolve/{rev}/{path}                      model files
  HEAD|GET /datasets/{id}/resolve/{rev}/{path}             dataset files

Every resolve answer carries X-Repo-Commit. A regular (git) file is served in place with its git blob id
as ETag. An LFS file (matched by the repo's .gitattributes) answers 302 with X-Linked-Etag (its sha256)
and X-Linked-Size, pointing at a second server on another port, a stand-in for the hub's CDN: another
origin, so huggingface_hub stops at the redirect on HEAD and drops the auth header on GET, as for real.
Both servers honour Range requests (fsspec / HfFileSystem reads parquet that way). Errors carry the
X-Error-Code values huggingface_hub maps to its exceptions (RepoNotFound, RevisionNotFound,
EntryNotFound). Nothing is paginated and no Xet headers are sent, so plain HTTP downloads are used.

`hub_environment()` points the already-imported libraries at the server (their endpoint, offline flag
and cache paths are module constants read at import time) and refuses name lookups of non-loopback
hosts while it is active, so a test that would reach the internet fails instead.
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote

# The default .gitattributes of a new hub repo (LFS part), trimmed to the suffixes used here.
DEFAULT_LFS_PATTERNS = (
    "*.bin", "*.safetensors", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.model",
    "*.parquet", "*.arrow", "*.gz", "*.zip", "*.tar", "*.npy", "*.pkl",
)
LAST_MODIFIED = "2024-03-08T12:00:00.000Z"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


def gitattributes(patterns=DEFAULT_LFS_PATTERNS) -> bytes:
    return "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in patterns).encode()


@dataclass
class HubFile:
    path: str
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:  # git blob id (of the pointer file for LFS files)
        return git_blob_oid(lfs_pointer(self.data) if self.lfs else self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class HubRepo:
    """One repository at one commit. `files` maps repo paths to bytes; a .gitattributes with the default
    LFS patterns is added unless given, and decides which files are LFS."""

    repo_id: str
    files: dict[str, bytes]
    repo_type: str = "model"
    tags: list[str] = field(default_factory=list)
    gated: bool = False  # files need an Authorization header (listing and info stay public, as on the hub)
    entries: dict[str, HubFile] = field(init=False)
    sha: str = field(init=False)

    def __post_init__(self):
        files = dict(self.files)
        files.setdefault(".gitattributes", gitattributes())
        patterns = [line.split()[0] for line in files[".gitattributes"].decode().splitlines()
                    if "filter=lfs" in line]
        self.entries = {p: HubFile(p, d, any(fnmatch.fnmatch(p.rsplit("/", 1)[-1], pat) or fnmatch.fnmatch(p, pat)
                                             for pat in patterns))
                        for p, d in sorted(files.items())}
        h = hashlib.sha1(self.repo_id.encode())
        for p, f in self.entries.items():
            h.update(p.encode() + b"\0" + f.oid.encode())
        self.sha = h.hexdigest()

    @property
    def api_kind(self) -> str:
        return self.repo_type + "s"

    def directories(self) -> set[str]:
        out = set()
        for p in self.entries:
            parts = p.split("/")[:-1]
            out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return out

    def entry_json(self, path: str, expand: bool = False) -> dict:
        if path in self.entries:
            f = self.entries[path]
            out = {"type": "file", "oid": f.oid, "size": len(f.data), "path": path}
            if f.lfs:
                out["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": len(lfs_pointer(f.data))}
        else:
            out = {"type": "directory", "oid": hashlib.sha1(f"tree {path}".encode()).hexdigest(), "size": 0,
                   "path": path}
        if expand:
            out["lastCommit"] = {"id": self.sha, "title": "Upload folder", "date": LAST_MODIFIED}
        return out

    def tree(self, path: str, recursive: bool) -> list[str] | None:
        """Paths under directory `path` ("" = root): directories first, then files, as the hub does."""
        dirs = self.directories()
        if path and path not in dirs:
            return None
        prefix = path + "/" if path else ""
        below = [p for p in sorted(dirs | set(self.entries)) if p.startswith(prefix)]
        if not recursive:
            below = [p for p in below if "/" not in p[len(prefix):]]
        return [p for p in below if p in dirs] + [p for p in below if p not in dirs]

    def info_json(self, blobs: bool = False) -> dict:
        siblings = []
        for p, f in self.entries.items():
            s = {"rfilename": p}
            if blobs:
                s.update(size=len(f.data), blobId=f.oid)
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": len(lfs_pointer(f.data))}
            siblings.append(s)
        out = {
            "_id": hashlib.sha1(self.repo_id.encode()).hexdigest()[:24], "id": self.repo_id,
            "author": self.repo_id.split("/")[0], "sha": self.sha, "lastModified": LAST_MODIFIED,
            "createdAt": LAST_MODIFIED, "private": False, "gated": "auto" if self.gated else False, "disabled": False, "downloads": 0,
            "likes": 0, "tags": list(self.tags), "siblings": siblings,
            "usedStorage": sum(len(f.data) for f in self.entries.values()),
        }
        if self.repo_type == "model":
            out["modelId"] = self.repo_id
            if "config.json" in self.entries:
                cfg = json.loads(self.entries["config.json"].data)
                out["config"] = {k: cfg[k] for k in ("architectures", "model_type") if k in cfg}
        return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def do_HEAD(self):
        self.server.hub._dispatch(self, "HEAD")

    def do_GET(self):
        self.server.hub._dispatch(self, "GET")

    def do_POST(self):
        self.server.hub._dispatch(self, "POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: FakeHub, role: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub, self.role = hub, role


TEST_TOKEN = "hf_localtestserver"  # a dummy: the only token the local hub accepts for gated repos


class FakeHub:
    """The hub API server plus its "CDN" server, both on free localhost ports.

    >>> with FakeHub([HubRepo("org/model", {"config.json": b"{}"})]) as hub:
    ...     hub.url  # -> HF_ENDPOINT
    """

    def __init__(self, repos=(), token: str = TEST_TOKEN):
        self.token = token
        self.repos: dict[tuple[str, str], HubRepo] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status), for assertions/debugging
        self._lock = threading.Lock()
        self._servers: list[_Server] = []
        for r in repos:
            self.add(r)

    def add(self, repo: HubRepo) -> HubRepo:
        self.repos[(repo.repo_type, repo.repo_id)] = repo
        return repo

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        self._servers = [_Server(self, "hub"), _Server(self, "cdn")]
        for s in self._servers:
            threading.Thread(target=s.serve_forever, name=f"fakehub-{s.role}", daemon=True).start()
        return self

    def stop(self) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()
        self._servers = []

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def paths_requested(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [p for m, p, _ in self.requests if method in (None, m)]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- HTTP --------------------------------------------------------------------------------------------
    def _dispatch(self, h: _Handler, method: str) -> None:
        raw_path, _, query = h.path.partition("?")
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            if h.server.role == "cdn":
                status = self._cdn(h, method, raw_path, params)
            else:
                status = self._hub(h, method, raw_path, params)
        except BrokenPipeError:
            status = -1
        with self._lock:
            self.requests.append((method, h.path, status))

    def _send(self, h: _Handler, method: str, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json; charset=utf-8") -> int:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            h.send_header(k, str(v))
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)
        return status

    def _json(self, h, method, obj, status=200, headers=None) -> int:
        return self._send(h, method, status, json.dumps(obj).encode(), headers)

    def _error(self, h, method, status: int, code: str | None, message: str, headers=None) -> int:
        hdrs = {"X-Error-Message": message, **(headers or {})}
        if code:
            hdrs["X-Error-Code"] = code
        return self._json(h, method, {"error": message}, status, hdrs)

    def _file(self, h: _Handler, method: str, data: bytes, headers: dict) -> int:
        """200 or 206 (Range) with the bytes of one file."""
        total, rng = len(data), h.headers.get("Range")
        headers = {"Accept-Ranges": "bytes", **headers}
        ctype = "application/octet-stream"
        if rng and rng.startswith("bytes="):
            start_s, _, end_s = rng[len("bytes="):].split(",")[0].strip().partition("-")
            if start_s:
                start, end = int(start_s), min(int(end_s) if end_s else total - 1, total - 1)
            else:
                start, end = max(0, total - int(end_s)), total - 1
            if start >= total or start > end:
                return self._send(h, method, 416, b"", {**headers, "Content-Range": f"bytes */{total}"}, ctype)
            return self._send(h, method, 206, data[start:end + 1],
                              {**headers, "Content-Range": f"bytes {start}-{end}/{total}"}, ctype)
        return self._send(h, method, 200, data, headers, ctype)

    def _cdn(self, h, method, raw_path, params) -> int:
        parts = raw_path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "lfs" and method in ("GET", "HEAD"):
            for repo in self.repos.values():
                for f in repo.entries.values():
                    if f.lfs and f.sha256 == parts[1]:
                        return self._file(h, method, f.data, {"ETag": f'"{f.sha256}"'})
        return self._send(h, method, 404, b"NoSuchKey", content_type="text/plain")

    def _repo(self, h, method, repo_type, repo_id, revision):
        """(repo, None) or (None, status already sent)."""
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            return None, self._error(h, method, 404, "RepoNotFound", "Repository not found")
        if revision not in ("main", repo.sha):
            return None, self._error(h, method, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo, None

    def _hub(self, h, method, raw_path, params) -> int:
        seg = raw_path.strip("/").split("/")
        if seg[0] == "api" and len(seg) >= 4 and seg[1] in ("models", "datasets", "spaces"):
            repo_type, repo_id, rest = seg[1][:-1], f"{unquote(seg[2])}/{unquote(seg[3])}", seg[4:]
            if not rest or rest[0] == "revision":
                revision = unquote(rest[1]) if len(rest) > 1 else "main"
                repo, sent = self._repo(h, method, repo_type, repo_id, revision)
                return sent if repo is None else self._json(h, method, repo.info_json(
                    blobs=params.get("blobs", "").lower() == "true"))
            if rest[0] == "tree" and len(rest) >= 2 and method in ("GET", "HEAD"):
                repo, sent = self._repo(h, method, repo_type, repo_id, unquote(rest[1]))
                if repo is None:
                    return sent
                path = unquote("/".join(rest[2:])).strip("/")
                listing = repo.tree(path, params.get("recursive", "").lower() == "true")
                if listing is None:
                    return self._error(h, method, 404, "EntryNotFound", f"{path} does not exist on \"main\"")
                expand = params.get("expand", "").lower() == "true"
                return self._json(h, method, [repo.entry_json(p, expand) for p in listing])
            if rest[0] == "paths-info" and len(rest) >= 2 and method == "POST":
                repo, sent = self._repo(h, method, repo_type, repo_id, unquote(rest[1]))
                if repo is None:
                    return sent
                form = parse_qs(h.rfile.read(int(h.headers.get("Content-Length") or 0)).decode())
                expand = form.get("expand", ["false"])[-1].lower() == "true"
                known = repo.directories() | set(repo.entries)
                paths = [p.strip("/") for p in form.get("paths", [])]
                return self._json(h, method, [repo.entry_json(p, expand) for p in paths if p in known])
            return self._error(h, method, 404, None, f"no route for {raw_path} in the test hub")
        repo_type = "model"
        if seg[0] in ("datasets", "spaces"):
            repo_type, seg = seg[0][:-1], seg[1:]
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            repo_id, revision = f"{unquote(seg[0])}/{unquote(seg[1])}", unquote(seg[3])
            repo, sent = self._repo(h, method, repo_type, repo_id, revision)
            if repo is None:
                return sent
            path = unquote("/".join(seg[4:]))
            commit = {"X-Repo-Commit": repo.sha}
            if repo.gated and h.headers.get("Authorization") != f"Bearer {self.token}":
                return self._error(h, method, 401, "GatedRepo", f"Access to {repo.repo_type} {repo.repo_id} is "
                                   "restricted. You must have access to it and be authenticated to access it.", commit)
            f = repo.entries.get(path)
            if f is None:
                return self._error(h, method, 404, "EntryNotFound", "Entry not found", commit)
            if f.lfs:
                return self._send(h, method, 302, b"", {
                    **commit, "Location": f"{self.cdn_url}/lfs/{f.sha256}?name={quote(path, safe='')}",
                    "ETag": f'"{f.oid}"', "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": len(f.data)},
                    content_type="text/plain; charset=utf-8")
            return self._file(h, method, f.data, {**commit, "ETag": f'"{f.oid}"'})
        return self._error(h, method, 404, None, f"no route for {raw_path} in the test hub")


# -- pointing the libraries at the server --------------------------------------------------------------
_LOOPBACK = {"127.0.0.1", "localhost", "::1", None}


@contextlib.contextmanager
def no_remote_lookups():
    """Refuse to resolve any host but loopback while active (as a missing network would), and record them."""
    real = socket.getaddrinfo
    refused: list[str] = []

    def guarded(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in _LOOPBACK and not str(name).startswith("127."):
            refused.append(str(name))
            raise socket.gaierror(socket.EAI_NONAME, f"test hub: lookup of {name!r} refused (offline test)")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = guarded
    try:
        yield refused
    finally:
        socket.getaddrinfo = real


@contextlib.contextmanager
def hub_environment(endpoint: str, home: Path, token: str | None = TEST_TOKEN):
    """Point huggingface_hub, datasets and transformers at `endpoint`, with caches under `home`.

    `token` becomes HF_TOKEN (None: no token at all); a token file or HF_TOKEN of the machine is never read.

    Sets the environment variables for subprocesses and patches the module constants the libraries
    computed at import time (tests/conftest.py imports them in offline mode). Restores all on exit.
    Also turns off two calls of `datasets` to other hosts: the dataset viewer's parquet export
    (`datasets-server.<endpoint host>`, not served here; a failed lookup is what happens for repos
    without an export anyway) and the download-count ping to s3.amazonaws.com.
    """
    import datasets.config as dcfg
    import huggingface_hub.constants as hc
    import huggingface_hub.hf_api as hapi
    from huggingface_hub import HfFileSystem

    home = Path(home)
    hub_cache, ds_cache = home / "hub", home / "datasets"
    env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_CACHE": str(hub_cache),
           "HF_DATASETS_CACHE": str(ds_cache), "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
           "TRANSFORMERS_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
           "HF_UPDATE_DOWNLOAD_COUNTS": "0", "HF_TOKEN": token, "HUGGING_FACE_HUB_TOKEN": None,
           "HF_HUB_DISABLE_IMPLICIT_TOKEN": None if token else "1"}
    patches = [
        (hc, "ENDPOINT", endpoint), (hc, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"),
        (hc, "HF_HUB_OFFLINE", False), (hc, "HF_HOME", str(home)), (hc, "HF_HUB_CACHE", str(hub_cache)),
        (hc, "HUGGINGFACE_HUB_CACHE", str(hub_cache)), (hc, "HF_ASSETS_CACHE", str(home / "assets")),
        (hc, "HF_TOKEN_PATH", str(home / "token")), (hc, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens")),
        (hc, "HF_HUB_DISABLE_IMPLICIT_TOKEN", not token), (hc, "HF_HUB_DISABLE_XET", True),
        (hapi.api, "endpoint", endpoint),
        (dcfg, "HF_ENDPOINT", endpoint), (dcfg, "HUB_DATASETS_URL", endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"),
        (dcfg, "HF_HUB_OFFLINE", False), (dcfg, "HF_DATASETS_OFFLINE", False), (dcfg, "HF_CACHE_HOME", str(home)),
        (dcfg, "HF_DATASETS_CACHE", ds_cache), (dcfg, "HF_MODULES_CACHE", home / "modules"),
        (dcfg, "DOWNLOADED_DATASETS_PATH", ds_cache / "downloads"),
        (dcfg, "EXTRACTED_DATASETS_PATH", ds_cache / "downloads" / "extracted"),
        (dcfg, "USE_PARQUET_EXPORT", False), (dcfg, "HF_UPDATE_DOWNLOAD_COUNTS", False),
    ]
    saved_env = {k: os.environ.get(k) for k in env}
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches if hasattr(obj, name)]
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    for obj, name, value in patches:
        if hasattr(obj, name):
            setattr(obj, name, value)
    HfFileSystem.clear_instance_cache()
    try:
        with no_remote_lookups() as refused:
            yield refused
    finally:
        HfFileSystem.clear_instance_cache()
        for obj, name, value in saved:
            setattr(obj, name, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
