"""`pulumi up` cannot wait on itself: the NFs' Services are not awaited (components/base.py).

The IMS DNS zone needs the CSCFs' ClusterIPs; the CSCF pods wait for the IMS DNS before they
start; Pulumi's await of a Service lasts until it selects Ready pods and only then gives its
ClusterIP. An awaited CSCF Service therefore deadlocks `pulumi up` whenever the provider sees the
CSCF pod before its await settles (seen on the node tier: no IMS DNS after 10 minutes).
The workloads (Deployments, StatefulSets) are still awaited.
"""

from __future__ import annotations

SERVICE = "kubernetes:core/v1:Service"


def test_no_nf_service_is_awaited_while_the_workloads_are(dev_run):
    run = dev_run
    services = {r.inputs["metadata"]["name"]: r.inputs["metadata"] for r in run.mocks.of_type(SERVICE)}
    assert {"pcscf", "icscf", "scscf", "coredns", "valkey", "rtpengine"} <= set(services), sorted(services)
    awaited = [n for n, m in services.items() if m.get("annotations", {}).get("pulumi.com/skipAwait") != "true"]
    # The CGRateS StorDB Service names no pod that waits for the IMS DNS.
    assert set(awaited) <= {"cgrates-stordb"}, awaited
    for typ in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"):
        for workload in run.mocks.of_type(typ):
            assert "pulumi.com/skipAwait" not in (workload.inputs["metadata"].get("annotations") or {}), workload.name
