"""Kamailio as P-CSCF, I-CSCF and S-CSCF: one component shape, three roles.

Each role gets its rendered config (ConfigMap) and the file holding the Valkey password
(Secret) projected together at /etc/kamailio, a Deployment of the shared Kamailio image, a
Service (SIP UDP+TCP, Diameter TCP, and the P-CSCF's Mw and IPsec ports), and a NetworkPolicy:
(pcscfGmExposure hostNetwork puts the P-CSCF pod on its node's network: the only way here
for ESP to reach it, so IPsec requires it; see "Gm exposure and IPsec" below)
SIP Gm is open only into the P-CSCF; the P-CSCF's Mw port (where the core sends mobile-
terminating requests, trusted as the core) takes only the I-/S-CSCF; I-/S-CSCF take SIP from
the CSCFs and the SIP peers the settings name; Diameter comes in from the HSS/PCRF pods of
this stack and the Diameter peers the settings name (components/policy.py).
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from . import policy
from .base import NON_ROOT_UID, DeployContext, NetworkFunctionComponent, non_root_security_context
from .interfaces import uses
from .render import kamailio as render_kamailio
from .render import startup
from .settings import CSCF_ROLES

CONFIG_DIR = "/etc/kamailio"
SEED_FILE = "seed/icscf-tables.valkey"
CLUSTER_DOMAIN = "cluster.local"
# Who reaches the P-CSCF's Mw socket: the core, never a UE.
MW_PEERS = ("icscf", "scscf")
# Diameter peers that may open connections to each role (HSS: RTR/PPR; PCRF: ASR/RAR on Rx).
DIAMETER_PEERS = {"pcscf": ("pcrf",), "icscf": ("hss",), "scscf": ("hss",)}


def configmap_key(path: str) -> str:
    """ConfigMap keys are flat; nested paths become `route__register.cfg`."""
    return path.replace("/", "__")


class Cscf(NetworkFunctionComponent):
    """One CSCF role; `role` is pcscf, icscf or scscf."""

    def __init__(self, role: str, ctx: DeployContext, opts: pulumi.ResourceOptions | None = None):
        if role not in CSCF_ROLES:
            raise ValueError(f"role {role!r}: must be one of {', '.join(CSCF_ROLES)}")
        self.nf = role
        self.component = role
        super().__init__("ims:kamailio:Cscf", ctx, opts)
        settings = ctx.settings
        nf = settings.nf(role)
        self.ipsec = role == "pcscf" and settings.pcscf_ipsec

        files = render_kamailio.render(settings, role)
        if role == "icscf":
            files[SEED_FILE] = render_kamailio.icscf_seed_script(settings)
        self.config = self.config_map("config", {configmap_key(p): text for p, text in files.items()})
        sources = [
            k8s.core.v1.VolumeProjectionArgs(
                config_map=k8s.core.v1.ConfigMapProjectionArgs(
                    name=self.config.metadata.name,
                    items=[k8s.core.v1.KeyToPathArgs(key=configmap_key(p), path=p) for p in sorted(files)],
                )
            )
        ]
        # Only Valkey's clients get its password (components/interfaces.py says who they are).
        self.valkey_client = uses(role, "valkey")
        self.secrets = None
        if self.valkey_client:
            secret_files = pulumi.Output.from_input(ctx.valkey_password).apply(
                lambda password: render_kamailio.render_secrets(settings, role, password)
            )
            self.secrets = self.secret("secrets", secret_files)
            sources.append(
                k8s.core.v1.VolumeProjectionArgs(
                    secret=k8s.core.v1.SecretProjectionArgs(
                        name=self.secrets.metadata.name,
                        items=[
                            k8s.core.v1.KeyToPathArgs(key=render_kamailio.SECRETS_FILE, path=render_kamailio.SECRETS_FILE)
                        ],
                    )
                )
            )
        volume = k8s.core.v1.VolumeArgs(
            name="config", projected=k8s.core.v1.ProjectedVolumeSourceArgs(default_mode=0o440, sources=sources)
        )

        container_ports = [
            k8s.core.v1.ContainerPortArgs(name="sip-udp", container_port=render_kamailio.SIP_PORT, protocol="UDP"),
            k8s.core.v1.ContainerPortArgs(name="sip-tcp", container_port=render_kamailio.SIP_PORT, protocol="TCP"),
            k8s.core.v1.ContainerPortArgs(
                name="diameter", container_port=render_kamailio.DIAMETER_PORT, protocol="TCP"
            ),
        ]
        if role == "pcscf":
            container_ports += [
                k8s.core.v1.ContainerPortArgs(
                    name="sip-mw-udp", container_port=render_kamailio.MW_PORT, protocol="UDP"
                ),
                k8s.core.v1.ContainerPortArgs(
                    name="sip-mw-tcp", container_port=render_kamailio.MW_PORT, protocol="TCP"
                ),
            ]
        container_ports += self.ipsec_container_ports()
        security = self.ipsec_security_context() if self.ipsec else non_root_security_context()

        container = k8s.core.v1.ContainerArgs(
            name="kamailio",
            image=ctx.images.reference("kamailio"),
            args=["-DD", "-E", *settings.kamailio[role].args(), "-f", f"{CONFIG_DIR}/kamailio.cfg"],
            env=self.pod_ip_env(),
            ports=container_ports,
            resources=self.resources(),
            security_context=security,
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True),
                k8s.core.v1.VolumeMountArgs(name="run", mount_path="/run/kamailio"),
                # cdp makes a FIFO per Diameter peer under /tmp (/tmp/cdp_send_*); on the
                # read-only root it fails, a cdp worker exits and Kamailio stops (seen on the node tier).
                k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
            ],
            # Ready means the SIP stack answers (an OPTIONS to itself gets a 200) and the Diameter
            # peer it cannot work without is open: a restarted I-/S-CSCF whose Cx connection is
            # not up yet would answer UEs 504, a P-CSCF without Rx 488. No start-up cycle: each
            # CSCF's cdp opens that connection itself, to the HSS/PCRF Service, whose pods are
            # Ready on their own (listening); the HSS/PCRF connecting to the CSCF's Service (which
            # routes only to Ready pods) is a second path nothing waits for. It needs the CSCF's
            # CER to be accepted: cdp puts the connected socket's address in Host-IP-Address
            # (tests/live/test_diameter_readiness.py shows it with the Cx double, which refuses a
            # CER without it as freeDiameter does).
            readiness_probe=k8s.core.v1.ProbeArgs(
                exec_=k8s.core.v1.ExecActionArgs(command=render_kamailio.readiness_command(settings, role)),
                period_seconds=5,
                timeout_seconds=5,
                failure_threshold=3,
            ),
            # Alive means it still answers within a minute: a wedged Kamailio (every worker stuck)
            # is restarted, while a busy one that answers late is only taken out of the Service.
            liveness_probe=self.sip_probe(period=10, failures=6),
            termination_message_policy="FallbackToLogsOnError",
        )
        self.workload = self.deployment_for(container, volume)

        service_ports = [
            k8s.core.v1.ServicePortArgs(name="sip-udp", port=render_kamailio.SIP_PORT, protocol="UDP"),
            k8s.core.v1.ServicePortArgs(name="sip-tcp", port=render_kamailio.SIP_PORT, protocol="TCP"),
            k8s.core.v1.ServicePortArgs(name="diameter", port=render_kamailio.DIAMETER_PORT, protocol="TCP"),
        ]
        service_ports += [
            k8s.core.v1.ServicePortArgs(name=p.name, port=p.container_port, protocol=p.protocol)
            for p in container_ports
            if p.name.startswith(("sip-mw", "ipsec"))
        ]
        self.svc = self.service(service_ports, cluster_ip=nf.address)
        self.network_policy(self.ingress_rules(container_ports))

        self.address = self.svc.spec.cluster_ip
        self.register_outputs(
            {
                "address": self.address,
                "fqdn": nf.fqdn,
                "deployment": self.workload.metadata.name,
                "configMap": self.config.metadata.name,
            }
        )

    @staticmethod
    def sip_probe(*, period: int, failures: int) -> k8s.core.v1.ProbeArgs:
        return k8s.core.v1.ProbeArgs(
            exec_=k8s.core.v1.ExecActionArgs(
                command=["/usr/local/bin/sip-options-probe", "127.0.0.1", str(render_kamailio.SIP_PORT)]
            ),
            period_seconds=period,
            timeout_seconds=3,
            failure_threshold=failures,
        )

    def init_containers(self) -> list[k8s.core.v1.ContainerArgs]:
        """The IMS DNS first (every role resolves names at start), then Valkey for its clients."""
        waits = []
        if self.ctx.resolver is not None:
            waits.append(self.dns_init_container())
        if self.valkey_client:
            waits.append(self.valkey_init_container())
        return waits

    def deployment_for(self, container: k8s.core.v1.ContainerArgs, config: k8s.core.v1.VolumeArgs):
        pod = k8s.core.v1.PodSpecArgs(
            init_containers=self.init_containers() or None,
            containers=[container],
            volumes=[
                config,
                k8s.core.v1.VolumeArgs(name="run", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="16Mi")),
            ],
            enable_service_links=False,
            # The projected config and secret files are 0440: group-readable for the non-root user.
            security_context=k8s.core.v1.PodSecurityContextArgs(fs_group=NON_ROOT_UID),
            host_network=self.gm_host_network or None,
            **self.dns(),
        )
        # On the node's network the pod holds the node's SIP ports: no second pod beside it.
        return self.deployment(pod, recreate=self.gm_host_network)

    # --- Gm exposure and IPsec (P-CSCF only) ----------------------------------------------
    # pcscfGmExposure decides how UEs reach the P-CSCF: its Service (SIP over UDP/TCP; ESP
    # never passes kube-proxy) or the node's network (hostNetwork: UEs, through the UPF's
    # route, reach the node's address, ESP included). IPsec needs hostNetwork (settings
    # refuse it otherwise); the tunnels are bound to the pod's address from the downward API,
    # which with hostNetwork is the node's.

    @property
    def gm_host_network(self) -> bool:
        return self.nf == "pcscf" and self.settings.pcscf_gm_exposure == "hostNetwork"

    def ipsec_container_ports(self) -> list[k8s.core.v1.ContainerPortArgs]:
        """Every protected port ims_ipsec_pcscf opens (IPSEC_PORT_PAIRS client and server ports),
        UDP and TCP: the same list feeds the Service and the NetworkPolicy."""
        if not self.ipsec:
            return []
        return [
            k8s.core.v1.ContainerPortArgs(name=f"{name}-{proto.lower()}", container_port=port, protocol=proto)
            for name, port in render_kamailio.ipsec_ports()
            for proto in ("UDP", "TCP")
        ]

    def pod_ip_env(self) -> list[k8s.core.v1.EnvVarArgs] | None:
        """The pod's address for defines.cfg: IPsec binds to it, Rx names it (P-CSCF only)."""
        if not (self.ipsec or (self.nf == "pcscf" and self.settings.pcscf_rx)):
            return None
        return [
            k8s.core.v1.EnvVarArgs(
                name=render_kamailio.POD_IP_ENV,
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path="status.podIP")
                ),
            )
        ]

    @staticmethod
    def ipsec_security_context() -> k8s.core.v1.SecurityContextArgs:
        # ims_ipsec_pcscf installs xfrm states and policies: NET_ADMIN, nothing else. A
        # capability granted to a non-root user is not effective, so this one runs as uid 0.
        return k8s.core.v1.SecurityContextArgs(
            run_as_user=0,
            run_as_non_root=False,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"], add=["NET_ADMIN"]),
        )

    def dns(self) -> dict:
        """Kamailio resolves the IMS/EPC FQDNs (advertise, Path, Diameter peers) when it starts:
        the IMS DNS answers them and forwards every other name to the cluster DNS."""
        if self.ctx.resolver is None:
            # On the node's network the default policy would use the node's resolver.
            return {"dns_policy": "ClusterFirstWithHostNet"} if self.gm_host_network else {}
        return {
            "dns_policy": "None",
            "dns_config": k8s.core.v1.PodDNSConfigArgs(
                nameservers=[self.ctx.resolver],
                searches=[
                    self.ctx.namespace.apply(lambda ns: f"{ns}.svc.{CLUSTER_DOMAIN}"),
                    f"svc.{CLUSTER_DOMAIN}",
                    CLUSTER_DOMAIN,
                ],
                options=[k8s.core.v1.PodDNSConfigOptionArgs(name="ndots", value="2")],
            ),
        }

    def dns_init_container(self) -> k8s.core.v1.ContainerArgs:
        """Waits until the IMS DNS serves this role's own name: Kamailio resolves the IMS/EPC
        names when it starts and stops if one is unknown (a crash loop while CoreDNS starts)."""
        fqdn = self.settings.nf(self.nf).fqdn
        script = pulumi.Output.from_input(self.ctx.resolver).apply(lambda server: startup.wait_for_dns(fqdn, server))
        return k8s.core.v1.ContainerArgs(
            name="wait-for-ims-dns",
            image=self.ctx.images.reference("kamailio"),
            command=["sh", "-c", script],
            security_context=non_root_security_context(),
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "10m", "memory": "16Mi"}, limits={"memory": "32Mi"}
            ),
            termination_message_policy="FallbackToLogsOnError",
        )

    def valkey_init_container(self) -> k8s.core.v1.ContainerArgs:
        """Waits for Valkey before Kamailio starts (ims_usrloc_pcscf and ims_icscf give up at
        start-up when their database is unreachable: no start-order race, no crash loop); for
        the I-CSCF it then writes the I-CSCF tables (idempotent HSETs)."""
        settings = self.settings
        valkey = settings.nf("valkey")
        host = valkey.address or valkey.fqdn
        secret = pulumi.Output.from_input(self.ctx.valkey_secret or "the Valkey password Secret")

        def script(secret_name: str) -> str:
            text = startup.wait_for_valkey(host, render_kamailio.VALKEY_PORT, secret_name)
            if self.nf == "icscf":
                db = settings.valkey_databases["icscf"]
                text += f"\nvalkey-cli --no-auth-warning -h {host} -n {db} < {CONFIG_DIR}/{SEED_FILE}"
            return text

        env = []
        if self.ctx.valkey_secret is not None:
            env.append(
                k8s.core.v1.EnvVarArgs(
                    name="REDISCLI_AUTH",
                    value_from=k8s.core.v1.EnvVarSourceArgs(
                        secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=self.ctx.valkey_secret, key="password")
                    ),
                )
            )
        return k8s.core.v1.ContainerArgs(
            name="wait-for-valkey" if self.nf != "icscf" else "seed-icscf-tables",
            image=settings.images.valkey,
            command=["sh", "-ec", secret.apply(script)],
            env=env,
            security_context=non_root_security_context(),
            resources=k8s.core.v1.ResourceRequirementsArgs(
                requests={"cpu": "10m", "memory": "16Mi"}, limits={"memory": "32Mi"}
            ),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True)],
            termination_message_policy="FallbackToLogsOnError",
        )

    def ingress_rules(self, ports: list[k8s.core.v1.ContainerPortArgs]):
        def port_args(names):
            return [
                k8s.networking.v1.NetworkPolicyPortArgs(port=p.container_port, protocol=p.protocol)
                for p in ports
                if p.name.startswith(names)
            ]

        peers = self.settings.peers
        rules = []
        if self.nf == "pcscf":
            # Gm: UEs reach the P-CSCF from anywhere (through the PGW/UPF).
            rules.append(
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(ports=port_args(("sip-udp", "sip-tcp", "ipsec")))
            )
            # Mw: the P-CSCF trusts what arrives here as the core (mobile-terminating requests).
            rules.append(
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=port_args(("sip-mw",)), from_=self.from_nfs(*MW_PEERS)
                )
            )
        else:
            # Mw between the CSCFs, plus the SIP peers the stack names: application servers
            # (ISC), BGCF/MGCF/IBCF, other networks reaching the I-CSCF through NAPTR/SRV.
            rules.append(
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=port_args(("sip",)),
                    from_=self.from_nfs(*CSCF_ROLES)
                    + policy.namespace_peers(peers.sip_namespaces)
                    + policy.cidr_peers(peers.sip_cidrs),
                )
            )
        # Diameter opened by the HSS (RTR/PPR) or PCRF (ASR/RAR): its pods in this stack, or
        # where the stack says it runs (a Service address would never match a source).
        for peer in DIAMETER_PEERS[self.nf]:
            warning = policy.unadmitted_diameter_peer(self.settings, peer)
            if warning and self.nf != "scscf":  # the I-CSCF already said it for the HSS
                pulumi.log.warn(warning, resource=self)
        rules.append(
            k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                ports=port_args(("diameter",)),
                from_=self.from_nfs(*DIAMETER_PEERS[self.nf])
                + policy.namespace_peers(peers.diameter_namespaces)
                + policy.cidr_peers(peers.diameter_cidrs),
            )
        )
        return rules
