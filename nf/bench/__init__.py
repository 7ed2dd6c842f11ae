"""``nf bench``: tapnf beside reference servers (nginx, the kernel, a minimal responder, the
bare crypto floor), measured in one run; every figure is a per-round ratio (min/median/max).

Sub-benchmarks, one module each: ``handshake`` (openssl s_time through the TAP vs nginx),
``tls`` (in-process CPU per handshake vs its crypto floor), ``tcp`` (bulk echo MB/s vs nginx
stream / kernel echo), ``icmp`` (ping -f vs a struct responder), ``cache`` (bytes per cached
session, lookup cost). ``runner.run`` drives them with one shared lab.
"""

from nf.bench.figures import Report, Row, Spread
from nf.bench.runner import SUBS, Plan, run

__all__ = ["SUBS", "Plan", "Report", "Row", "Spread", "run"]
