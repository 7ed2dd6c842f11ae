"""Third-party plugins in real chains: the example distribution ``tapnf-example-rot13``
(``tests/example_plugin``, found through its ``tapnf.plugins`` entry points): the ``rot13``
stream stage between TLS and the built-in apps, and between TLS and ``forward`` to a backend in
the root namespace; the ``pingblock`` packet stage in the same chain; real clients in the lab
namespace."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.lab import Lab, lab_nf
from tests.example_plugin.installed import ensure_installed

VIP = "192.0.2.10"


class TellBackend:
    """Answers each connection with ``got:`` and the line it received (root namespace)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(60)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                line = b""
                while not line.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    line += chunk
                self.received.append(line)
                conn.sendall(b"got:" + line)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def backend() -> Iterator[TellBackend]:
    b = TellBackend()
    yield b
    b.close()


@pytest.fixture(scope="module")
def plugin_lab(tmp_path_factory: pytest.TempPathFactory, backend: TellBackend) -> Iterator[Lab]:
    ensure_installed()
    cfg = f"""
[profiles.clientssl]
cert = "certs/rsa.pem"
key = "certs/rsa.key"
lab_certs = true

[[virtual_servers]]
name = "vs_rot13_echo"
port = 4433
chain = ["pingblock", "tls:clientssl", "rot13:down", "echo"]

[[virtual_servers]]
name = "vs_rot13_forward"
port = 4434
chain = ["tls:clientssl", "rot13", "forward"]
backend = "127.0.0.1:{backend.port}"

[[virtual_servers]]
name = "vs_rot13_plain"
port = 7070
chain = ["rot13", "echo"]
rot13_direction = "up"
"""
    with lab_nf(tmp_path_factory.mktemp("plugin"), cfg) as lab:
        yield lab


CLIENT = r"""
import socket, ssl, sys
port, tls, msg = int(sys.argv[1]), sys.argv[2] == "tls", sys.argv[3].encode() + b"\n"
raw = socket.create_connection(("192.0.2.10", port), timeout=15)
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(raw)
else:
    s = raw
s.sendall(msg)
got = b""
while not got.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    got += chunk
sys.stdout.write(got.decode())
"""


def talk(lab: Lab, tmp_path: Path, port: int, tls: bool, msg: str) -> str:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    r = lab.ns([sys.executable, str(script), str(port), "tls" if tls else "plain", msg], timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_rot13_between_tls_and_echo(plugin_lab: Lab, tmp_path: Path) -> None:
    assert talk(plugin_lab, tmp_path, 4433, True, "Hello, tapnf!") == "Uryyb, gncas!\n"


def test_rot13_between_tls_and_forward(
    plugin_lab: Lab, tmp_path: Path, backend: TellBackend
) -> None:
    # up: the backend sees the ROT13 of the client's line; down: ROT13 of the backend's answer
    assert talk(plugin_lab, tmp_path, 4434, True, "Attack at dawn") == "tbg:Attack at dawn\n"
    assert backend.received[-1] == b"Nggnpx ng qnja\n"


def test_rot13_on_plain_tcp_with_the_option_from_the_virtual_server(
    plugin_lab: Lab, tmp_path: Path
) -> None:
    assert talk(plugin_lab, tmp_path, 7070, False, "abc XYZ") == "nop KLM\n"


def test_packet_stage_from_a_plugin_drops_pings_while_the_streams_flow(
    plugin_lab: Lab, tmp_path: Path
) -> None:
    for target in ("192.0.2.10", "2001:db8::10"):
        r = plugin_lab.ns(["ping", "-c", "2", "-i", "0.2", "-W", "1", target], timeout=15)
        assert r.returncode != 0 and " 0 received" in r.stdout, r.stdout
    # the same NF still answers ARP/ND and serves the chain the packet stage sits in
    assert talk(plugin_lab, tmp_path, 4433, True, "Hello, tapnf!") == "Uryyb, gncas!\n"
