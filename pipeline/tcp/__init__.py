"""tapnf's own TCP: sans-IO endpoint, reassembler, flow table with SYN cookies, chain glue."""

from pipeline.tcp.assembler import Reassembler
from pipeline.tcp.config import TcpConfig
from pipeline.tcp.cookies import IsnGenerator, SynCookies
from pipeline.tcp.endpoint import TcpEndpoint
from pipeline.tcp.rtt import RttEstimator
from pipeline.tcp.stack import Flow, TcpStack
from pipeline.tcp.tcb import State

__all__ = [
    "Flow",
    "IsnGenerator",
    "Reassembler",
    "RttEstimator",
    "State",
    "SynCookies",
    "TcpConfig",
    "TcpEndpoint",
    "TcpStack",
]
