"""A pod runner with a kubelet's semantics, on podman pods: the chart's own pod specs run
as a cluster would run them, without a cluster.

One concept per module:

- ``objects``: the namespace's objects as the API server would hold them.
- ``release``: ``helm install`` and ``helm test``: hooks in phase and weight order, the
  release's objects in Helm's kind order, the controllers' pods.
- ``controllers``: Deployments (HPA minimum), StatefulSets and Jobs (backoff) to pods.
- ``admission``: what the API server and the kubelet refuse before a container starts.
- ``pods``: a pod's lifecycle: sandbox, init containers, native sidecars, restarts.
- ``probes``: startup, liveness and readiness probes, dialled from the host.
- ``environment`` and ``expansion``: a container's env and ``$(VAR)`` references.
- ``volumes``: configMap, secret, projected, emptyDir and PVC volumes on the host.
- ``security``: securityContext as podman options, and the runAsNonRoot check.
- ``network``: the pods' bridge network, Service IPs, external names.
- ``services``: Services: a kube-proxy over ready endpoints, and names in /etc/hosts.
- ``standins``: third-party images built from Debian's packages.
- ``api_server``: a Kubernetes API for the pods that need one (kmock's emulator over TLS at
  the ``kubernetes`` Service address), mirrored from the namespace; attached on request.
"""
