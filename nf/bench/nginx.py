"""nginx as the reference server: one worker on the veth address inside the bench namespace.

Same lab certificates (ECDSA P-256 and RSA-2048 chains from ``configs/certs``, chosen by the
client's cipher suite), TLS 1.2 only, the same AEAD suites, ``ssl_session_cache shared``. Port
443 has tickets off (session-ID resumption, like tapnf's ``clientssl``), 8443 tickets on (like
``clientssl_tickets``). The ``stream`` module proxies 7 (plain) and 4433 (TLS) to a kernel echo.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from nf.bench.lab import CERT_DIR, REF_B, BenchLab, LabError, stop_process
from nf.bench.procs import children, tree_cpu_seconds

STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


def nginx_missing() -> str | None:
    """None when nginx (with the stream module) is installed, else why not."""
    if shutil.which("nginx") is None:
        return "nginx is not installed (make bench installs the Debian package when root)"
    if not STREAM_MODULE.exists():
        return f"{STREAM_MODULE} is missing (Debian libnginx-mod-stream)"
    return None


def _tls(cache: str) -> str:
    certs = "".join(
        f"    ssl_certificate {CERT_DIR / k}.pem;\n    ssl_certificate_key {CERT_DIR / k}.key;\n"
        for k in ("ecdsa", "rsa")
    )
    return (
        "    ssl_protocols TLSv1.2;\n"
        f"    ssl_ciphers {CIPHERS};\n"
        "    ssl_prefer_server_ciphers off;\n"
        "    ssl_ecdh_curve X25519:prime256v1:secp384r1;\n"
        f"{certs}"
        f"    ssl_session_cache shared:{cache}:64m;\n"
        "    ssl_session_timeout 1h;\n"
    )


def render(workdir: Path, address: str = REF_B, echo_port: int = 7007) -> str:
    """The nginx.conf text for the bench (one worker, foreground)."""
    tmp = workdir / "nginx-tmp"
    temps = "".join(
        f"    {kind}_temp_path {tmp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"load_module {STREAM_MODULE};\n"
        "user root;\n"
        "worker_processes 1;\n"
        "daemon off;\n"
        "master_process on;\n"
        f"pid {workdir / 'nginx.pid'};\n"
        f"error_log {workdir / 'nginx-error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "    access_log off;\n"
        f"{temps}"
        f"{_tls('HTTPS')}"
        f"    server {{ listen {address}:443 ssl; ssl_session_tickets off; return 200 'ok'; }}\n"
        f"    server {{ listen {address}:8443 ssl; ssl_session_tickets on; return 200 'ok'; }}\n"
        "}\n"
        "stream {\n"
        f"{_tls('STREAM')}"
        "    ssl_session_tickets off;\n"
        f"    server {{ listen {address}:7; proxy_pass {address}:{echo_port}; }}\n"
        f"    server {{ listen {address}:4433 ssl; proxy_pass {address}:{echo_port}; }}\n"
        "}\n"
    )


def write_config(conf: Path, workdir: Path, address: str = REF_B, echo_port: int = 7007) -> None:
    """Write ``render()`` to ``conf`` and make the temp directories it names."""
    conf.write_text(render(workdir, address, echo_port))
    (workdir / "nginx-tmp").mkdir(exist_ok=True)


class Nginx:
    """A running nginx master (``pid``) with its one worker, inside the lab namespace."""

    def __init__(self, lab: BenchLab) -> None:
        self.lab = lab
        self.conf = lab.workdir / "nginx.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        write_config(self.conf, self.lab.workdir)
        check = self.lab.ns(["nginx", "-t", "-q", "-c", str(self.conf), "-e", "stderr"], 20)
        if check.returncode != 0:
            raise LabError(f"nginx -t: {check.stderr.strip()[-600:]}")
        self.proc = self.lab.ns_popen(
            ["nginx", "-c", str(self.conf), "-e", "stderr"], self.lab.workdir / "nginx.log"
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if children(self.proc.pid) and (self.lab.workdir / "nginx.pid").exists():
                return self
            time.sleep(0.05)
        log = (self.lab.workdir / "nginx.log").read_text(errors="replace")
        raise LabError(f"nginx did not start: {log[-600:]}")

    def cpu_seconds(self) -> float:
        """CPU of master + worker (the master is idle; the worker serves)."""
        return tree_cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    def stop(self) -> None:
        stop_process(self.proc)


__all__ = ["Nginx", "nginx_missing", "render", "write_config"]
