package registry

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
)

func semanticEqual(a, b interface{}) bool { return apiequality.Semantic.DeepEqual(a, b) }

func podColumns() []Column {
	pod := func(o runtime.Object) *corev1.Pod { return o.(*corev1.Pod) }
	return []Column{
		col("Ready", "string", func(o runtime.Object) interface{} {
			p := pod(o)
			ready := 0
			for _, s := range p.Status.ContainerStatuses {
				if s.Ready {
					ready++
				}
			}
			return ratio(int32(ready), int32(len(p.Spec.Containers)))
		}),
		col("Status", "string", func(o runtime.Object) interface{} { return podStatusReason(pod(o)) }),
		col("Restarts", "string", func(o runtime.Object) interface{} {
			var n int32
			for _, s := range pod(o).Status.ContainerStatuses {
				n += s.RestartCount
			}
			return fmt.Sprint(n)
		}),
		AgeColumn,
		wide(col("IP", "string", func(o runtime.Object) interface{} { return orNone(pod(o).Status.PodIP) })),
		wide(col("Node", "string", func(o runtime.Object) interface{} { return orNone(pod(o).Spec.NodeName) })),
		wide(col("Nominated Node", "string", func(o runtime.Object) interface{} { return orNone(pod(o).Status.NominatedNodeName) })),
		wide(col("Readiness Gates", "string", func(o runtime.Object) interface{} {
			p := pod(o)
			if len(p.Spec.ReadinessGates) == 0 {
				return "<none>"
			}
			return fmt.Sprintf("%d/%d", 0, len(p.Spec.ReadinessGates))
		})),
	}
}

// podStatusReason is the STATUS column: the most telling container state, as
// kubectl shows it.
func podStatusReason(p *corev1.Pod) string {
	reason := string(p.Status.Phase)
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	for i, s := range p.Status.InitContainerStatuses {
		switch {
		case s.State.Terminated != nil && s.State.Terminated.ExitCode == 0:
			continue
		case s.State.Terminated != nil:
			return "Init:" + orDefault(s.State.Terminated.Reason, fmt.Sprintf("ExitCode:%d", s.State.Terminated.ExitCode))
		case s.State.Waiting != nil && s.State.Waiting.Reason != "" && s.State.Waiting.Reason != "PodInitializing":
			return "Init:" + s.State.Waiting.Reason
		default:
			return fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers))
		}
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Waiting != nil && s.State.Waiting.Reason != "" {
			reason = s.State.Waiting.Reason
		} else if s.State.Terminated != nil && s.State.Terminated.Reason != "" {
			reason = s.State.Terminated.Reason
		}
	}
	if p.DeletionTimestamp != nil {
		reason = "Terminating"
	}
	return reason
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func serviceColumns() []Column {
	svc := func(o runtime.Object) *corev1.Service { return o.(*corev1.Service) }
	return []Column{
		col("Type", "string", func(o runtime.Object) interface{} { return string(svc(o).Spec.Type) }),
		col("Cluster-IP", "string", func(o runtime.Object) interface{} { return orNone(svc(o).Spec.ClusterIP) }),
		col("External-IP", "string", func(o runtime.Object) interface{} {
			s := svc(o)
			switch s.Spec.Type {
			case corev1.ServiceTypeExternalName:
				return s.Spec.ExternalName
			case corev1.ServiceTypeLoadBalancer:
				var ips []string
				for _, in := range s.Status.LoadBalancer.Ingress {
					ips = append(ips, in.IP+in.Hostname)
				}
				ips = append(ips, s.Spec.ExternalIPs...)
				if len(ips) == 0 {
					return "<pending>"
				}
				return strings.Join(ips, ",")
			}
			return joinOrNone(s.Spec.ExternalIPs)
		}),
		col("Port(s)", "string", func(o runtime.Object) interface{} {
			var parts []string
			for _, p := range svc(o).Spec.Ports {
				if p.NodePort != 0 {
					parts = append(parts, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol))
				} else {
					parts = append(parts, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
				}
			}
			return joinOrNone(parts)
		}),
		AgeColumn,
		wide(col("Selector", "string", func(o runtime.Object) interface{} { return selectorString(svc(o).Spec.Selector) })),
	}
}

func nodeColumns() []Column {
	node := func(o runtime.Object) *corev1.Node { return o.(*corev1.Node) }
	return []Column{
		col("Status", "string", func(o runtime.Object) interface{} {
			n := node(o)
			status := "Unknown"
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					if c.Status == corev1.ConditionTrue {
						status = "Ready"
					} else {
						status = "NotReady"
					}
				}
			}
			if n.Spec.Unschedulable {
				status += ",SchedulingDisabled"
			}
			return status
		}),
		col("Roles", "string", func(o runtime.Object) interface{} {
			var roles []string
			for k := range node(o).Labels {
				if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok {
					roles = append(roles, r)
				}
			}
			sort.Strings(roles)
			return joinOrNone(roles)
		}),
		AgeColumn,
		col("Version", "string", func(o runtime.Object) interface{} { return node(o).Status.NodeInfo.KubeletVersion }),
		wide(col("Internal-IP", "string", func(o runtime.Object) interface{} { return nodeAddress(node(o), corev1.NodeInternalIP) })),
		wide(col("External-IP", "string", func(o runtime.Object) interface{} { return nodeAddress(node(o), corev1.NodeExternalIP) })),
		wide(col("OS-Image", "string", func(o runtime.Object) interface{} { return orDefault(node(o).Status.NodeInfo.OSImage, "<unknown>") })),
		wide(col("Kernel-Version", "string", func(o runtime.Object) interface{} {
			return orDefault(node(o).Status.NodeInfo.KernelVersion, "<unknown>")
		})),
		wide(col("Container-Runtime", "string", func(o runtime.Object) interface{} {
			return orDefault(node(o).Status.NodeInfo.ContainerRuntimeVersion, "<unknown>")
		})),
	}
}

func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

func accessModes(m []corev1.PersistentVolumeAccessMode) string {
	short := map[corev1.PersistentVolumeAccessMode]string{
		corev1.ReadWriteOnce: "RWO", corev1.ReadOnlyMany: "ROX", corev1.ReadWriteMany: "RWX", corev1.ReadWriteOncePod: "RWOP",
	}
	var parts []string
	for _, a := range m {
		parts = append(parts, short[a])
	}
	return strings.Join(parts, ",")
}

func pvColumns() []Column {
	pv := func(o runtime.Object) *corev1.PersistentVolume { return o.(*corev1.PersistentVolume) }
	return []Column{
		col("Capacity", "string", func(o runtime.Object) interface{} {
			q := pv(o).Spec.Capacity[corev1.ResourceStorage]
			return q.String()
		}),
		col("Access Modes", "string", func(o runtime.Object) interface{} { return accessModes(pv(o).Spec.AccessModes) }),
		col("Reclaim Policy", "string", func(o runtime.Object) interface{} { return string(pv(o).Spec.PersistentVolumeReclaimPolicy) }),
		col("Status", "string", func(o runtime.Object) interface{} { return string(pv(o).Status.Phase) }),
		col("Claim", "string", func(o runtime.Object) interface{} {
			if r := pv(o).Spec.ClaimRef; r != nil {
				return r.Namespace + "/" + r.Name
			}
			return ""
		}),
		col("StorageClass", "string", func(o runtime.Object) interface{} { return pv(o).Spec.StorageClassName }),
		col("Reason", "string", func(o runtime.Object) interface{} { return pv(o).Status.Reason }),
		AgeColumn,
	}
}

func pvcColumns() []Column {
	pvc := func(o runtime.Object) *corev1.PersistentVolumeClaim { return o.(*corev1.PersistentVolumeClaim) }
	return []Column{
		col("Status", "string", func(o runtime.Object) interface{} { return string(pvc(o).Status.Phase) }),
		col("Volume", "string", func(o runtime.Object) interface{} { return pvc(o).Spec.VolumeName }),
		col("Capacity", "string", func(o runtime.Object) interface{} {
			if q, ok := pvc(o).Status.Capacity[corev1.ResourceStorage]; ok {
				return q.String()
			}
			return ""
		}),
		col("Access Modes", "string", func(o runtime.Object) interface{} { return accessModes(pvc(o).Status.AccessModes) }),
		col("StorageClass", "string", func(o runtime.Object) interface{} {
			if c := pvc(o).Spec.StorageClassName; c != nil {
				return *c
			}
			return ""
		}),
		AgeColumn,
	}
}
