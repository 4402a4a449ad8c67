"""The GCP provider: the real google-cloud-compute REST client against the Compute double."""

from __future__ import annotations

import dataclasses

import pytest

from backstop.cloud.gcp import GcpProvider
from backstop.cloud.resources import RUNNING, STARTING, STOPPED, CloudResource
from backstop.core.errors import ActuationError
from tests.support.fake_gce import FakeGce


def provider(gce: FakeGce) -> GcpProvider:
    return GcpProvider(gce.project, ["us-central1-a", "europe-west4-b"], endpoint_url=gce.url)


def by_name(p: GcpProvider) -> dict[str, CloudResource]:
    return {r.name: r for r in p.resources()}


def test_inventory_counts_instances_with_gpus_in_every_zone(gce: FakeGce) -> None:
    gce.add("llm-1", labels={"team": "llm"})
    gce.add("l4", zone="europe-west4-b", machine_type="g2-standard-8", accelerators=())
    gce.add(
        "booting",
        machine_type="n1-standard-8",
        accelerators=(("nvidia-tesla-t4", 2),),
        status="STAGING",
    )
    gce.add("web", machine_type="e2-standard-4", accelerators=())
    gce.add("elsewhere", zone="asia-east1-a")  # a zone not watched

    found = by_name(provider(gce))

    assert set(found) == {"llm-1", "l4", "booting"}
    llm = found["llm-1"]
    assert llm.workload_id == "gcp/us-central1-a/gce/llm-1"
    assert (llm.kind, llm.state, llm.instance_type) == ("gce-instance", RUNNING, "a2-highgpu-8g")
    assert llm.gpus == ("nvidia-tesla-a100",) * 8
    assert llm.tags == {"team": "llm"}
    assert found["l4"].gpus == ("GPU",)  # built into the G2 machine type
    assert found["booting"].state == STARTING


def test_stop_and_start_wait_for_their_operations(gce: FakeGce) -> None:
    gce.add("llm-1")
    p = provider(gce)

    p.stop(by_name(p)["llm-1"])
    assert gce.status("llm-1") == "TERMINATED"
    assert by_name(p)["llm-1"].state == STOPPED
    p.start(by_name(p)["llm-1"])
    assert gce.status("llm-1") == "RUNNING"
    assert sum(c.startswith("POST operations/wait") for c in gce.calls) == 2


def test_labels_are_changed_against_their_fingerprint_and_read_again_when_stale(
    gce: FakeGce,
) -> None:
    gce.add("llm-1", labels={"team": "llm"})
    p = provider(gce)
    r = by_name(p)["llm-1"]
    gce.label_races = 2  # someone else changes the labels twice meanwhile

    p.mark(r, {"backstop-hold-cor-1": "shutdown"})

    assert gce.labels("llm-1") == {
        "team": "llm",
        "touched-by": "someone-else-0",  # the other writer's last change is kept
        "backstop-hold-cor-1": "shutdown",
    }
    assert gce.calls.count("GET instances llm-1") == 2
    p.unmark(by_name(p)["llm-1"], ["backstop-hold-cor-1"])
    assert "backstop-hold-cor-1" not in gce.labels("llm-1")


def test_labels_that_never_settle_are_an_error(gce: FakeGce) -> None:
    gce.add("llm-1")
    p = provider(gce)
    gce.label_races = 100

    with pytest.raises(ActuationError, match="kept changing"):
        p.mark(by_name(p)["llm-1"], {"backstop-hold-cor-1": "pause"})


def test_a_missing_instance_is_an_error_naming_it(gce: FakeGce) -> None:
    gce.add("llm-1")
    p = provider(gce)
    r = by_name(p)["llm-1"]
    del gce.instances[("us-central1-a", "llm-1")]

    with pytest.raises(ActuationError, match=r"stop gcp/us-central1-a/gce/llm-1: .*not found"):
        p.stop(r)


def test_a_managed_instance_group_member_is_stopped_and_started_through_its_group(
    gce: FakeGce,
) -> None:
    """Stopped directly, the group would repair it: the double restarts such a member."""
    gce.add("pool-a1b2", group="llm-pool")
    p = provider(gce)
    member = by_name(p)["pool-a1b2"]
    assert member.group.endswith("/zones/us-central1-a/instanceGroupManagers/llm-pool")

    said = p.stop(member)

    assert said.startswith("instanceGroupManagers.stopInstances llm-pool/pool-a1b2")
    assert gce.status("pool-a1b2") == "TERMINATED"
    assert gce.repairs == []
    assert "POST instanceGroupManagers/stopInstances llm-pool" in gce.calls
    p.start(by_name(p)["pool-a1b2"])
    assert gce.status("pool-a1b2") == "RUNNING"
    assert "POST instanceGroupManagers/startInstances llm-pool" in gce.calls


def test_a_member_of_a_regional_group_is_refused_with_what_to_do(gce: FakeGce) -> None:
    gce.add("pool-x")
    p = provider(gce)
    regional = dataclasses.replace(
        by_name(p)["pool-x"], group="projects/1234/regions/us-central1/instanceGroupManagers/rp"
    )

    with pytest.raises(ActuationError, match="regional managed instance groups"):
        p.stop(regional)
    assert gce.status("pool-x") == "RUNNING"
