"""In-process handshake benchmark: server-side CPU per handshake beside the bare cost of the same
cryptographic operations (the floor), for ``nf bench tls`` and ``tests/.../test_engine_bench``.

Cases: full handshake with an ECDSA P-256 certificate, full with RSA-2048 (both ECDHE x25519,
AES-128-GCM), resumed by session ID, resumed by ticket. The client is Python's ``ssl`` over
MemoryBIO. Each case first records ``n`` handshakes with it (what the server drew from its rng and
the signatures it made are kept on a tape per connection), then replays the recorded client
flights to fresh server connections in a tight loop, the tape handing back the recorded random
bytes and signatures so every replayed Finished verifies (the server still draws and signs: it
pays the same). That replay, timed with the ``cpu_clock`` the caller passes in (sans-IO: this
module reads no clock itself), is the server figure, measured as the floor is: in a tight loop
with hot caches. The server's CPU while recording, with the client running in between, is
reported beside it (``interleaved_us``): about 45-50 µs more per resumed handshake and 70-90 µs
per full one, which is the cost of cold caches, not of more work.

The floor is what no TLS 1.2 server can avoid for that handshake, each operation done the
cheapest way this Python offers, in a tight loop:

* full: draw the server random and the x25519 private key; derive the public key; load the
  client's point and exchange; sign (ECDSA P-256/SHA-256 or RSA-PSS-2048/SHA-256) the ECDHE
  params; hash the transcript (SHA-256 over the messages, three digests: session hash, client and
  server Finished); extended master secret, key block and both Finished with the PRF; set up the
  two AES-GCM keys and open the client's Finished record and seal ours;
* resumed: draw the server random; the same transcript, key block, Finished and record work;
  plus one ticket AEAD open for the ticket case.

Inputs the server does not draw (client random, the client's point, the transcript bytes) are
prepared outside the timed loop. Not in the floor: verifying our own signature (no server does),
the session cache (not cryptography). The PRF is ``plugins.tls.prf`` (HMAC with precomputed pads,
the fastest HMAC here: ``hmac.digest`` one-shot costs twice as much); if the engine found a
faster PRF, the floor would get faster with it.

Where the server's time goes (py-spy --native, server alone replaying recorded client flights,
2-core shared VM, November 2026; server-only µs, end of November: full ECDSA ~172, full RSA
~416, resumed by ID ~42, by ticket ~48; the percentages below are from ~15 % slower code, before
the connection's reference cycle was broken and the codecs, record layer and full flight were
trimmed). A full handshake's crypto itself costs more inside the engine than in the floor's
tight loop: timed in place, ECDSA sign ~28 µs vs 22 (with the hashing), x25519 keygen 37 vs 33,
exchange 36 vs 32 (caches cooled by the Python in between; ordering the operations differently
does not change it), about 15 of the ~55 µs between the full ECDSA figure and its floor:

* full ECDSA: cryptography 45% (x25519 keygen + exchange ~60 µs, ECDSA sign ~25 µs), handshake
  states 10%, codecs 8%, record layer 8%, connection dispatch/events 8%, hashlib (PRF,
  transcript) 7%, resumption/cache 5%, GC 4%;
* full RSA: cryptography 72% (RSA-2048 sign ~300 µs), the rest as above;
* resumed: codecs 20% (ClientHello + extensions ~6 µs), connection 15%, hashlib 15%, record
  layer 12%, states 9%, resumption (cache or ticket open, state decode) 7-12%, AEAD 7%, GC 5%.

Until November 2026 the server figure was the interleaved one, against a tight-loop floor: the
two sides were measured under different cache conditions (ratio ~8 for resumed handshakes where
the same code replayed costs ~4 times its floor).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding

from plugins.tls import prf
from plugins.tls.certs import CertResolver, prepare
from plugins.tls.labcerts import self_signed
from plugins.tls.profile import CertPair, TlsProfile
from plugins.tls.resumption import ProfileRuntime
from plugins.tls.server import HandshakeComplete, TlsServerConnection

CASES = ("full_ecdsa_p256", "full_rsa_2048", "resumed_session_id", "resumed_ticket")
OP_NO_TICKET = ssl.OP_NO_TICKET


@dataclass(frozen=True)
class BenchResult:
    case: str
    handshakes: int
    server_us: float  # mean server CPU per handshake, replayed in a tight loop like the floor
    floor_us: float  # mean cost of the bare operations
    interleaved_us: float = 0.0  # the same handshakes, timed while the ssl client ran in between

    @property
    def ratio(self) -> float:
        return self.server_us / self.floor_us if self.floor_us else float("inf")


def _pair(kind: str) -> CertPair:
    cert, key = self_signed("rsa" if kind == "rsa" else "ecdsa-p256", "bench.tapnf")
    return CertPair((cert,), key, ("bench.tapnf",))


class _Tape:
    """What one connection drew from the rng and signed, played back on replay.

    Recording, it hands out fresh random bytes and real signatures and keeps them. Replaying, it
    still draws as many random bytes and still computes every signature (so the replayed server
    pays the same), but returns the recorded values, so the server's flights (ServerHello random,
    ECDHE share, ServerKeyExchange signature, session ID) are the ones the recorded client
    answered and its Finished verifies.
    """

    def __init__(self, rng: Callable[[int], bytes]) -> None:
        self.rng = rng
        self.draws: list[bytes] = []
        self.signatures: list[bytes] = []
        self.replaying = False
        self._i = self._j = 0

    def rewind(self) -> None:
        self.replaying, self._i, self._j = True, 0, 0

    def __call__(self, n: int) -> bytes:
        fresh = self.rng(n)
        if not self.replaying:
            self.draws.append(fresh)
            return fresh
        out = self.draws[self._i]
        self._i += 1
        return out

    def signed(self, signature: bytes) -> bytes:
        if not self.replaying:
            self.signatures.append(signature)
            return signature
        out = self.signatures[self._j]
        self._j += 1
        return out


class _TapeKey:
    """A certificate key whose ``sign`` goes through the current connection's tape."""

    def __init__(self, key: Any) -> None:
        self.key = key
        self.tape: _Tape | None = None

    def sign(self, data: bytes, *args: Any) -> bytes:
        signature = bytes(self.key.sign(data, *args))
        return self.tape.signed(signature) if self.tape is not None else signature


def _drive(
    ctx: ssl.SSLContext,
    conn: TlsServerConnection,
    session: ssl.SSLSession | None,
    wall: float,
    cpu_clock: Callable[[], float],
) -> tuple[ssl.SSLObject, list[bytes], float]:
    """One handshake against the ssl client: (client object, its flights, server CPU seconds)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, session=session)
    flights: list[bytes] = []
    spent = 0.0
    for _ in range(20):
        try:
            obj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        data = out.read()
        t0 = cpu_clock()
        if data:
            conn.receive_data(data, wall)
        back = conn.data_to_send()
        spent += cpu_clock() - t0
        if data:
            flights.append(data)
        if back:
            inc.write(back)
        if done and not data and not back:
            break
    if _completed(conn) is None:
        raise RuntimeError("benchmark handshake did not complete")
    return obj, flights, spent


def _completed(conn: TlsServerConnection) -> HandshakeComplete | None:
    ev = conn.next_event()
    while ev is not None and not isinstance(ev, HandshakeComplete):
        ev = conn.next_event()
    return ev


def _client(options: int = 0) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
    ctx.options |= options
    return ctx


def run(
    n: int,
    cpu_clock: Callable[[], float],
    rng: Callable[[int], bytes],
    cases: tuple[str, ...] = CASES,
) -> list[BenchResult]:
    """Run ``n`` handshakes per case; returns one result per case.

    Each case records ``n`` handshakes against the ssl client (timing the server as it goes:
    ``interleaved_us``), then replays the recorded client flights to fresh server connections
    in a tight loop, one clock read around all ``n`` (``server_us``), and checks that every
    replay completed with the expected outcome. The floor is timed the same way.
    """
    ecdsa, rsa_pair = _pair("ecdsa"), _pair("rsa")
    results = []
    wall = 1_800_000_000.0
    for case in cases:
        pair = rsa_pair if case == "full_rsa_2048" else ecdsa
        tickets = case == "resumed_ticket"
        prof = TlsProfile(name="bench", certs=(pair,), groups=("x25519",), session_ticket=tickets)
        runtime = ProfileRuntime(prof, rng=rng, wall_clock=lambda: wall)
        key = _TapeKey(pair.key)
        resolver = CertResolver(
            dataclasses.replace(prepare(p.cert_chain, p.key, p.names), key=key) for p in prof.certs
        )
        ctx = _client(0 if tickets else OP_NO_TICKET)
        session = None
        if case.startswith("resumed"):
            warm = TlsServerConnection(runtime, resolver, rng)
            session = _drive(ctx, warm, None, wall, cpu_clock)[0].session
        recorded: list[tuple[_Tape, list[bytes]]] = []
        interleaved = 0.0
        for _ in range(n):
            tape = _Tape(rng)
            key.tape = tape
            obj, flights, spent = _drive(
                ctx, TlsServerConnection(runtime, resolver, tape), session, wall, cpu_clock
            )
            if session is not None and not obj.session_reused:
                raise RuntimeError(f"{case}: the client did not resume")
            recorded.append((tape, flights))
            interleaved += spent
        want = "resumed" if session is not None else "full"
        outcomes = set()
        t0 = cpu_clock()
        for tape, flights in recorded:
            tape.rewind()
            key.tape = tape
            conn = TlsServerConnection(runtime, resolver, tape)
            for data in flights:
                conn.receive_data(data, wall)
                conn.data_to_send()
            done = _completed(conn)  # the TLS stage drains the events the same way
            outcomes.add(done.info.outcome if done is not None else "incomplete")
        replayed = cpu_clock() - t0
        if outcomes != {want}:
            raise RuntimeError(f"{case}: replayed handshakes ended {sorted(outcomes)}, not {want}")
        floor = _floor(case, pair, n, cpu_clock, rng)
        results.append(
            BenchResult(case, n, replayed / n * 1e6, floor / n * 1e6, interleaved / n * 1e6)
        )
    return results


def _floor(
    case: str, pair: CertPair, n: int, cpu_clock: Callable[[], float], rng: Callable[[int], bytes]
) -> float:
    full = case.startswith("full")
    client_random = rng(32)
    peer = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    # transcript bytes of about the right size: hellos, certificate, key exchanges
    cert_len = sum(len(c.public_bytes(Encoding.DER)) for c in pair.cert_chain)
    transcript = rng(512 + (cert_len + 400 if full else 0))
    key_block_len = 40  # AES-128-GCM: 2 x (16-byte key + 4-byte salt)
    ticket_aead = AESGCM(rng(32))
    ticket_nonce = rng(12)
    sealed_ticket = ticket_aead.encrypt(ticket_nonce, rng(80), b"name")
    master = rng(48)
    # The client's Finished record, sealed under a key fixed here so that the timed open succeeds;
    # the timed loop still sets up that AES-GCM key (same cost as the derived one).
    client_key, nonce, aad = rng(16), rng(12), rng(13)
    sealed_client_finished = AESGCM(client_key).encrypt(nonce, rng(16), aad)
    sha256 = hashes.SHA256()
    sig_args: tuple[Any, ...] = (
        (padding.PSS(padding.MGF1(sha256), 32), sha256)
        if isinstance(pair.key, rsa.RSAPrivateKey)
        else (ec.ECDSA(sha256),)
    )
    ticket = case == "resumed_ticket"
    t0 = cpu_clock()
    for _ in range(n):
        server_random = rng(32)
        transcript_hash = hashlib.sha256(transcript)
        if full:
            priv = x25519.X25519PrivateKey.from_private_bytes(rng(32))
            params = priv.public_key().public_bytes_raw()
            pms = priv.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
            pair.key.sign(client_random + server_random + params, *sig_args)
            ms = prf.extended_master_secret("sha256", pms, transcript_hash.copy().digest())
            rng(32)  # the session ID a full handshake stores under (cache on, tickets off)
        elif ticket:
            ticket_aead.decrypt(ticket_nonce, sealed_ticket, b"name")
            ms = master
        else:
            ms = master
        keyed = prf.HmacKey("sha256", ms)
        kb = prf.key_block("sha256", keyed, server_random, client_random, key_block_len)
        read, write = AESGCM(client_key), AESGCM(kb[16:32])
        finished = read.decrypt(nonce, sealed_client_finished, aad)
        want = prf.verify_data("sha256", keyed, "client", transcript_hash.copy().digest())
        hmac.compare_digest(finished[4:], want)
        transcript_hash.update(finished)
        ours = prf.verify_data("sha256", keyed, "server", transcript_hash.digest())
        write.encrypt(nonce, b"\x14\x00\x00\x0c" + ours, aad)
    return cpu_clock() - t0


def format_results(results: list[BenchResult]) -> str:
    head = f"{'case':<22}{'server µs':>12}{'floor µs':>12}{'ratio':>8}{'with client µs':>16}"
    lines = [head]
    for r in results:
        lines.append(
            f"{r.case:<22}{r.server_us:>12.0f}{r.floor_us:>12.0f}{r.ratio:>8.2f}"
            f"{r.interleaved_us:>16.0f}"
        )
    return "\n".join(lines)


__all__ = ["CASES", "BenchResult", "format_results", "run"]
