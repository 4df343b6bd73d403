#!/usr/bin/env python3
"""Checks the invariants the HyperCache/Orbstrike manifests must keep, on rendered YAML.

Usage: check_invariants.py RENDERED.yaml [--name LABEL]

Schema validity is kubernetes-validate's job (validate.sh); this checks what a schema cannot:
the settings without which discovery, bootstrap, quorum or a graceful drain break. Exits 1 and
names every violated invariant.
"""

import re
import sys

import yaml  # PyYAML, installed with kubernetes-validate

STS = "hypercache"                 # StatefulSet and headless Service name (part of node DNS names)
GAMESERVER = "orbstrike-gameserver"
ORCHESTRATOR = "orbstrike-orchestrator"
GAMESERVER_STOP_GRACE_S = 15       # gRPC + admin + accept-log stop after the drain, 5 s each
DEFAULT_DRAIN_TIMEOUT_MS = 10_000  # orbstrike/src/gameserver/config.rs


def main():
    path = sys.argv[1]
    label = sys.argv[sys.argv.index("--name") + 1] if "--name" in sys.argv else path
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    failures, passed = [], []

    def check(ok, what):
        (passed if ok else failures).append(what)
        return ok

    def get(kind, name):
        obj = objs.get((kind, name))
        check(obj is not None, f"{kind}/{name} exists")
        return obj or {}

    # --- HyperCache -------------------------------------------------------------------------
    svc = get("Service", STS)
    spec = svc.get("spec", {})
    check(spec.get("clusterIP") == "None", "headless Service has clusterIP: None")
    check(spec.get("publishNotReadyAddresses") is True, "headless Service has publishNotReadyAddresses: true")
    ports = spec.get("ports", [])
    check(ports and all(p.get("name") for p in ports), "headless Service ports are named")
    check(any(p.get("name") == "grpc" for p in ports), "headless Service has a port named grpc (SRV _grpc._tcp)")

    sts = get("StatefulSet", STS)
    sspec = sts.get("spec", {})
    replicas = sspec.get("replicas", 1)
    check(sspec.get("serviceName") == STS, f"StatefulSet serviceName is {STS}")
    check(sspec.get("podManagementPolicy") == "Parallel", "StatefulSet has podManagementPolicy: Parallel")
    pod = sspec.get("template", {}).get("spec", {})
    pod_labels = sspec.get("template", {}).get("metadata", {}).get("labels", {})
    check(selects(sspec.get("selector"), pod_labels), "StatefulSet selector matches its pod labels")
    check(selects_labels(spec.get("selector", {}), pod_labels), "headless Service selects the HyperCache pods")
    check(pod.get("enableServiceLinks") is False,
          "HyperCache pods have enableServiceLinks: false (service links inject unknown HYPERCACHE_* vars)")
    terms = pod.get("affinity", {}).get("podAntiAffinity", {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution", [])
    check(any(t["podAffinityTerm"].get("topologyKey") == "kubernetes.io/hostname"
              and selects(t["podAffinityTerm"].get("labelSelector"), pod_labels) for t in terms),
          "StatefulSet has preferred pod anti-affinity on kubernetes.io/hostname")
    c = container(pod, "hypercache")
    admin_ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check("admin" in admin_ports and "grpc" in admin_ports, "HyperCache container ports are named grpc and admin")
    check(probe_is(c.get("readinessProbe"), "/readyz", "admin"), "readiness probe is /readyz on the admin port")
    check(probe_is(c.get("livenessProbe"), "/livez", "admin"), "liveness probe is /livez on the admin port (not quorum)")
    check(c.get("startupProbe") is None or probe_is(c["startupProbe"], "/livez", "admin"),
          "startup probe, if any, does not depend on quorum")
    env = env_map(c)
    check("$(POD_NAME)." + STS + "." in env.get("HYPERCACHE_ADVERTISE_ADDR", ""),
          "advertise_addr is the pod's stable name under the headless Service")
    check(f"._tcp.{STS}." in env.get("HYPERCACHE_DISCOVERY", "") or f"dns://{STS}." in env.get("HYPERCACHE_DISCOVERY", ""),
          "discovery resolves the headless Service")
    check(env_refs_defined_first(c), "HyperCache env: every $(VAR) is defined before it is used")
    config_refs = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
    check(bool(config_refs) and all(("ConfigMap", n) in objs for n in config_refs),
          "HyperCache config comes from a rendered ConfigMap (envFrom)")
    cfg = {}
    for n in config_refs:
        cfg.update(objs.get(("ConfigMap", n), {}).get("data", {}))
    cfg.update({k: v for k, v in env.items() if v is not None})
    expect = cfg.get("HYPERCACHE_BOOTSTRAP_EXPECT", "")
    check(expect.isdigit() and 1 <= int(expect) <= replicas,
          f"bootstrap_expect ({expect}) is at most the replicas ({replicas}), or the cluster never forms")
    check(cfg.get("HYPERCACHE_DATA_DIR") == "/data", "data_dir is /data")
    check(any(m.get("mountPath") == "/data" and m.get("name") in
              {t["metadata"]["name"] for t in sspec.get("volumeClaimTemplates", [])}
              for m in c.get("volumeMounts", [])), "/data is a volumeClaimTemplate")
    check(all(sec.get("secret", {}).get("optional") is True for sec in pod.get("volumes", []) if "secret" in sec),
          "HyperCache Secret volumes (TLS) are optional")

    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget" and selects(d["spec"].get("selector"), pod_labels)]
    if check(len(pdbs) == 1, "exactly one PodDisruptionBudget covers the HyperCache pods"):
        pspec = pdbs[0]["spec"]
        sizes = [replicas] if "minAvailable" in pspec else range(max(replicas, 3), 10)
        ok = all(kept(pspec, n) >= n // 2 + 1 for n in sizes)
        check(ok, f"PodDisruptionBudget keeps a Raft majority ({describe(pspec)}, sizes {list(sizes)})")

    # --- Orbstrike --------------------------------------------------------------------------
    gs = get("Deployment", GAMESERVER)
    gpod = gs.get("spec", {}).get("template", {}).get("spec", {})
    g = container(gpod, "gameserver")
    genv = env_map(g)
    pre_stop = g.get("lifecycle", {}).get("preStop")
    check(pre_stop is not None, "game server has a preStop hook")
    check(pre_stop is None or "exec" not in pre_stop, "game server preStop needs no binary (image is FROM scratch)")
    pause = (pre_stop or {}).get("sleep", {}).get("seconds", 0)
    drain_s = int(genv.get("ORBSTRIKE_DRAIN_TIMEOUT_MS") or DEFAULT_DRAIN_TIMEOUT_MS) / 1000
    grace = gpod.get("terminationGracePeriodSeconds", 30)
    check(grace >= pause + drain_s + GAMESERVER_STOP_GRACE_S,
          f"game server terminationGracePeriodSeconds ({grace}) >= preStop {pause} s + drain {drain_s:g} s"
          f" + stop {GAMESERVER_STOP_GRACE_S} s")
    check("$(POD_IP)" in genv.get("ORBSTRIKE_ADVERTISE", "") and field_ref(g, "POD_IP") == "status.podIP",
          "game server advertises its pod IP (downward API)")
    check(field_ref(g, "ORBSTRIKE_SERVER_ID") == "metadata.name", "game server id is the pod name")
    check(env_refs_defined_first(g), "game server env: every $(VAR) is defined before it is used")

    orch = get("Deployment", ORCHESTRATOR)
    opod = orch.get("spec", {}).get("template", {}).get("spec", {})
    o = container(opod, "orchestrator")
    check(field_ref(o, "ORBSTRIKE_ID") == "metadata.name", "orchestrator id (election candidate) is the pod name")
    check(selects_labels(get("Service", ORCHESTRATOR).get("spec", {}).get("selector", {}),
                         orch.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})),
          "orchestrator Service selects the orchestrator pods")

    for name in (GAMESERVER, ORCHESTRATOR):
        hpa = get("HorizontalPodAutoscaler", name)
        ref = hpa.get("spec", {}).get("scaleTargetRef", {})
        check(hpa.get("apiVersion") == "autoscaling/v2" and ref.get("kind") == "Deployment" and ref.get("name") == name,
              f"HPA {name} (autoscaling/v2) targets its Deployment")
        check("replicas" not in objs.get(("Deployment", name), {}).get("spec", {}),
              f"Deployment {name} leaves replicas to its HPA")

    # --- Every workload -----------------------------------------------------------------------
    for d in docs:
        if d["kind"] not in ("StatefulSet", "Deployment"):
            continue
        name = f'{d["kind"]}/{d["metadata"]["name"]}'
        p = d["spec"]["template"]["spec"]
        psc = p.get("securityContext", {})
        for ctr in p.get("containers", []):
            sc = ctr.get("securityContext", {})
            res = ctr.get("resources", {})
            check((psc.get("runAsNonRoot") or sc.get("runAsNonRoot")) is True, f"{name}: runs as non-root")
            check(sc.get("readOnlyRootFilesystem") is True, f"{name}: read-only root filesystem")
            check(sc.get("allowPrivilegeEscalation") is False, f"{name}: no privilege escalation")
            check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: drops ALL capabilities")
            check((psc.get("seccompProfile") or sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
                  f"{name}: seccomp RuntimeDefault")
            check(all(k in res.get("requests", {}) for k in ("cpu", "memory"))
                  and "memory" in res.get("limits", {}), f"{name}: resource requests and a memory limit")
            check(ctr.get("livenessProbe") and ctr.get("readinessProbe"), f"{name}: liveness and readiness probes")
        for v in p.get("volumes", []):
            sec = v.get("secret")
            if sec and not sec.get("optional"):
                check(("Secret", sec["secretName"]) in objs, f"{name}: Secret {sec['secretName']} is rendered")

    if failures:
        print(f"FAIL invariants {label}: {len(failures)} violated, {len(passed)} held")
        for f in failures:
            print(f"    violated: {f}")
        return 1
    print(f"ok   invariants {label}: {len(passed)} held")
    return 0


def container(pod, name):
    return next((c for c in pod.get("containers", []) if c.get("name") == name), {})


def env_map(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def field_ref(c, var):
    for e in c.get("env", []):
        if e["name"] == var:
            return e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    return None


def env_refs_defined_first(c):
    seen = set()
    for e in c.get("env", []):
        if any(ref not in seen for ref in re.findall(r"\$\((\w+)\)", e.get("value") or "")):
            return False
        seen.add(e["name"])
    return True


def probe_is(probe, path, port):
    get_ = (probe or {}).get("httpGet", {})
    return get_.get("path") == path and get_.get("port") == port


def selects(selector, labels):
    return selects_labels((selector or {}).get("matchLabels", {}), labels) if selector else False


def selects_labels(match, labels):
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def kept(pdb_spec, n):
    """Pods that must stay up under the budget with n replicas (Kubernetes' rounding)."""
    if "minAvailable" in pdb_spec:
        v = pdb_spec["minAvailable"]
        return -(-n * int(v[:-1]) // 100) if isinstance(v, str) else v
    v = pdb_spec["maxUnavailable"]
    return n - (-(-n * int(v[:-1]) // 100) if isinstance(v, str) else v)


def describe(pdb_spec):
    return ", ".join(f"{k}: {v}" for k, v in pdb_spec.items() if k != "selector")


if __name__ == "__main__":
    sys.exit(main())
