"""``interface.offload = true``: the kernel hands the NF TSO super-segments with partial checksums
(virtio_net_hdr on the TAP fd). Pings, echoes over IPv4 and IPv6 and many concurrent flows must
behave exactly as without offload, and the NF must really have received super-segments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tests.e2e.lab as lab_module
from tests.e2e.conftest import ECHO_VS
from tests.e2e.lab import Lab, lab_nf
from tests.e2e.test_tcp_echo import ECHO_CLIENT, MANY_CLIENTS, VIP, run_json

OFFLOAD_CONFIG = lab_module.BASE_CONFIG.replace('kind = "tap"\n', 'kind = "tap"\noffload = true\n')


def interface_status(lab: Lab) -> dict[str, Any]:
    assert lab.control is not None
    r = lab.nf("ctl", "--json", "--endpoint", lab.control, "nf.status")
    reply: dict[str, Any] = json.loads(r.stdout)
    assert reply["ok"], reply
    iface: dict[str, Any] = reply["result"]["interfaces"][0]
    return iface


def test_offload_config_differs_from_the_base() -> None:
    assert "offload = true" in OFFLOAD_CONFIG


@pytest.mark.timeout(300)
def test_offload_pings_echoes_and_super_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab_module, "BASE_CONFIG", OFFLOAD_CONFIG)
    with lab_nf(tmp_path, ECHO_VS, control=True) as lab:
        r = lab.ns("ping -c 50 -i 0.005 -W 2 -q 192.0.2.10", timeout=60)
        assert " 0% packet loss" in r.stdout, r.stdout + r.stderr
        r = lab.ns("ping -6 -c 20 -i 0.01 -W 2 -q 2001:db8::10", timeout=60)
        assert " 0% packet loss" in r.stdout, r.stdout + r.stderr
        before = interface_status(lab)
        assert before["offload"] is True and before["rx_bad_vnet"] == 0, before

        res = run_json(lab, ECHO_CLIENT, VIP, 7, 4_000_000, 11, "half", "120", timeout=150)
        assert res["ok"] and res["eof"] and res["got"] == 4_000_000, res
        after_v4 = interface_status(lab)
        assert after_v4["rx_gso_frames"] > before["rx_gso_frames"], after_v4  # TSO reached us
        assert after_v4["rx_csum_completed"] > 0, after_v4
        assert after_v4["tx_gso_frames"] > before["tx_gso_frames"], after_v4  # and TSO out

        res = run_json(lab, ECHO_CLIENT, "2001:db8::10", 7, 2_000_000, 12, "full", "120")
        assert res["ok"] and res["got"] == 2_000_000, res
        after_v6 = interface_status(lab)
        assert after_v6["rx_gso_frames"] > after_v4["rx_gso_frames"], after_v6
        assert after_v6["tx_gso_frames"] > after_v4["tx_gso_frames"], after_v6

        res = run_json(lab, MANY_CLIENTS, VIP, 7, 100, 50_000)
        assert res["ok"] == 100, res
        final = interface_status(lab)
        assert final["rx_bad_vnet"] == 0 and final["write_drops"] == 0, final
        assert lab.alive()
