"""A local Google Cloud Storage server for the gs:// tests (gcp-storage-emulator, in memory).

Every client in the project is pointed at it through environment variables: gcsfs and
google-cloud-storage (etils.epath, tensorboardX) read ``STORAGE_EMULATOR_HOST``; tensorstore
(Orbax's array writer) reads ``TENSORSTORE_GCS_HTTP_URL`` and a fake token.

Run as a script it is the server itself: the emulator, plus the ``x-goog-generation`` header that
real GCS sends with every download and that tensorstore's conditional writes (Orbax's OCDBT
manifest updates) depend on.

    python tests/gcs_emulator.py PORT BUCKET
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

BUCKET = "sembridge-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


class GCSEmulator:
    """``with GCSEmulator() as gcs:`` a fresh server; ``gcs.env`` points clients at it."""

    def __init__(self, bucket: str = BUCKET):
        self.bucket = bucket
        self.url = f"http://localhost:{free_port()}"
        self.env = {"STORAGE_EMULATOR_HOST": self.url, "TENSORSTORE_GCS_HTTP_URL": self.url,
                    "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test-token", "GOOGLE_CLOUD_PROJECT": "test-project",
                    # gcsfs probes every bucket for zonal/HNS layouts with real credentials: not here.
                    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> GCSEmulator:
        port = self.url.rsplit(":", 1)[1]
        self._proc = subprocess.Popen(
            [sys.executable, __file__, port, self.bucket],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b/{self.bucket}", timeout=1).close()
                return self
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"the GCS emulator did not start on {self.url}") from None
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    def path(self, name: str) -> str:
        """``gs://<bucket>/<name>``."""
        return f"gs://{self.bucket}/{name}"


def serve(port: int, bucket: str) -> None:
    import logging

    from gcp_storage_emulator.handlers import objects

    download = objects.download

    def download_with_generation(request, response, storage, *args, **kwargs):
        download(request, response, storage, *args, **kwargs)
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        except Exception:  # noqa: BLE001 - not found: the wrapped handler answered 404 already
            return
        response["x-goog-generation"] = str(obj["generation"])
        response["x-goog-metageneration"] = str(obj.get("metageneration", 1))

    objects.download = download_with_generation  # before the server module builds its routes
    from gcp_storage_emulator.server import create_server

    logging.disable(logging.ERROR)  # every 404 (a probe for a missing file) is logged as an error
    server = create_server("localhost", port, in_memory=True, default_bucket=bucket)
    server.run()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])
