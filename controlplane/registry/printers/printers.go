// Package printers holds the Table columns kubectl prints for the built-in
// kinds and the cell helpers they share, as Kubernetes' printers.
package printers

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// Column is one Table column.
type Column = generic.Column

// AgeColumn is the AGE column every resource has.
var AgeColumn = Column{Name: "Age", Type: "string", Description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
	Cell: func(obj runtime.Object) interface{} { return Age(generic.CreationTime(obj)) }}

// CreatedAtColumn is what kubectl prints for roles and limit ranges instead
// of an age; it lives here so that the kinds using it need not share a
// package.
var CreatedAtColumn = Column{Name: "Created At", Type: "date", Description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
	Cell: func(obj runtime.Object) interface{} { return generic.CreationTime(obj).UTC().Format(time.RFC3339) }}

// Age is the AGE cell of a timestamp.
func Age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

// OrNone is s, or <none> when empty.
func OrNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// JoinOrNone joins items with commas, or is <none>.
func JoinOrNone(items []string) string {
	if len(items) == 0 {
		return "<none>"
	}
	return strings.Join(items, ",")
}

// SelectorString prints a map selector as kubectl does.
func SelectorString(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// LabelSelectorString prints a label selector as kubectl does.
func LabelSelectorString(s *metav1.LabelSelector) string {
	if s == nil {
		return "<none>"
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil || sel.Empty() {
		return "<none>"
	}
	return sel.String()
}

// PtrInt32 is *p, or 0 for nil.
func PtrInt32(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

// Col is a column with a cell function.
func Col(name, typ string, cell func(obj runtime.Object) interface{}) Column {
	return Column{Name: name, Type: typ, Cell: cell}
}

// Wide marks a column as shown with -o wide only.
func Wide(c Column) Column {
	c.Priority = 1
	return c
}

// Ratio prints "a/b".
func Ratio(a, b int32) string { return fmt.Sprintf("%d/%d", a, b) }

// PodColumns are the columns of pods.
func PodColumns() []Column {
	pod := func(o runtime.Object) *corev1.Pod { return o.(*corev1.Pod) }
	return []Column{
		Col("Ready", "string", func(o runtime.Object) interface{} {
			p := pod(o)
			ready := 0
			for _, s := range p.Status.ContainerStatuses {
				if s.Ready {
					ready++
				}
			}
			return Ratio(int32(ready), int32(len(p.Spec.Containers)))
		}),
		Col("Status", "string", func(o runtime.Object) interface{} { return PodStatusReason(pod(o)) }),
		Col("Restarts", "string", func(o runtime.Object) interface{} {
			var n int32
			for _, s := range pod(o).Status.ContainerStatuses {
				n += s.RestartCount
			}
			return fmt.Sprint(n)
		}),
		AgeColumn,
		Wide(Col("IP", "string", func(o runtime.Object) interface{} { return OrNone(pod(o).Status.PodIP) })),
		Wide(Col("Node", "string", func(o runtime.Object) interface{} { return OrNone(pod(o).Spec.NodeName) })),
		Wide(Col("Nominated Node", "string", func(o runtime.Object) interface{} { return OrNone(pod(o).Status.NominatedNodeName) })),
		Wide(Col("Readiness Gates", "string", func(o runtime.Object) interface{} {
			p := pod(o)
			if len(p.Spec.ReadinessGates) == 0 {
				return "<none>"
			}
			return fmt.Sprintf("%d/%d", 0, len(p.Spec.ReadinessGates))
		})),
	}
}

// PodStatusReason is the STATUS column: the most telling container state, as
// kubectl shows it.
func PodStatusReason(p *corev1.Pod) string {
	reason := string(p.Status.Phase)
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	for i, s := range p.Status.InitContainerStatuses {
		switch {
		case s.State.Terminated != nil && s.State.Terminated.ExitCode == 0:
			continue
		case s.State.Terminated != nil:
			return "Init:" + OrDefault(s.State.Terminated.Reason, fmt.Sprintf("ExitCode:%d", s.State.Terminated.ExitCode))
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

// OrDefault is s, or d when s is empty.
func OrDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// ServiceColumns are the columns of services.
func ServiceColumns() []Column {
	svc := func(o runtime.Object) *corev1.Service { return o.(*corev1.Service) }
	return []Column{
		Col("Type", "string", func(o runtime.Object) interface{} { return string(svc(o).Spec.Type) }),
		Col("Cluster-IP", "string", func(o runtime.Object) interface{} { return OrNone(svc(o).Spec.ClusterIP) }),
		Col("External-IP", "string", func(o runtime.Object) interface{} {
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
			return JoinOrNone(s.Spec.ExternalIPs)
		}),
		Col("Port(s)", "string", func(o runtime.Object) interface{} {
			var parts []string
			for _, p := range svc(o).Spec.Ports {
				if p.NodePort != 0 {
					parts = append(parts, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol))
				} else {
					parts = append(parts, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
				}
			}
			return JoinOrNone(parts)
		}),
		AgeColumn,
		Wide(Col("Selector", "string", func(o runtime.Object) interface{} { return SelectorString(svc(o).Spec.Selector) })),
	}
}

// NodeColumns are the columns of nodes.
func NodeColumns() []Column {
	node := func(o runtime.Object) *corev1.Node { return o.(*corev1.Node) }
	return []Column{
		Col("Status", "string", func(o runtime.Object) interface{} {
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
		Col("Roles", "string", func(o runtime.Object) interface{} {
			var roles []string
			for k := range node(o).Labels {
				if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok {
					roles = append(roles, r)
				}
			}
			sort.Strings(roles)
			return JoinOrNone(roles)
		}),
		AgeColumn,
		Col("Version", "string", func(o runtime.Object) interface{} { return node(o).Status.NodeInfo.KubeletVersion }),
		Wide(Col("Internal-IP", "string", func(o runtime.Object) interface{} { return NodeAddress(node(o), corev1.NodeInternalIP) })),
		Wide(Col("External-IP", "string", func(o runtime.Object) interface{} { return NodeAddress(node(o), corev1.NodeExternalIP) })),
		Wide(Col("OS-Image", "string", func(o runtime.Object) interface{} { return OrDefault(node(o).Status.NodeInfo.OSImage, "<unknown>") })),
		Wide(Col("Kernel-Version", "string", func(o runtime.Object) interface{} {
			return OrDefault(node(o).Status.NodeInfo.KernelVersion, "<unknown>")
		})),
		Wide(Col("Container-Runtime", "string", func(o runtime.Object) interface{} {
			return OrDefault(node(o).Status.NodeInfo.ContainerRuntimeVersion, "<unknown>")
		})),
	}
}

// NodeAddress is the node's first address of type t.
func NodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

// AccessModes prints access modes as kubectl does (RWO, ROX, RWX, RWOP).
func AccessModes(m []corev1.PersistentVolumeAccessMode) string {
	short := map[corev1.PersistentVolumeAccessMode]string{
		corev1.ReadWriteOnce: "RWO", corev1.ReadOnlyMany: "ROX", corev1.ReadWriteMany: "RWX", corev1.ReadWriteOncePod: "RWOP",
	}
	var parts []string
	for _, a := range m {
		parts = append(parts, short[a])
	}
	return strings.Join(parts, ",")
}

// PVColumns are the columns of persistent volumes.
func PVColumns() []Column {
	pv := func(o runtime.Object) *corev1.PersistentVolume { return o.(*corev1.PersistentVolume) }
	return []Column{
		Col("Capacity", "string", func(o runtime.Object) interface{} {
			q := pv(o).Spec.Capacity[corev1.ResourceStorage]
			return q.String()
		}),
		Col("Access Modes", "string", func(o runtime.Object) interface{} { return AccessModes(pv(o).Spec.AccessModes) }),
		Col("Reclaim Policy", "string", func(o runtime.Object) interface{} { return string(pv(o).Spec.PersistentVolumeReclaimPolicy) }),
		Col("Status", "string", func(o runtime.Object) interface{} { return string(pv(o).Status.Phase) }),
		Col("Claim", "string", func(o runtime.Object) interface{} {
			if r := pv(o).Spec.ClaimRef; r != nil {
				return r.Namespace + "/" + r.Name
			}
			return ""
		}),
		Col("StorageClass", "string", func(o runtime.Object) interface{} { return pv(o).Spec.StorageClassName }),
		Col("Reason", "string", func(o runtime.Object) interface{} { return pv(o).Status.Reason }),
		AgeColumn,
	}
}

// PVCColumns are the columns of persistent volume claims.
func PVCColumns() []Column {
	pvc := func(o runtime.Object) *corev1.PersistentVolumeClaim { return o.(*corev1.PersistentVolumeClaim) }
	return []Column{
		Col("Status", "string", func(o runtime.Object) interface{} { return string(pvc(o).Status.Phase) }),
		Col("Volume", "string", func(o runtime.Object) interface{} { return pvc(o).Spec.VolumeName }),
		Col("Capacity", "string", func(o runtime.Object) interface{} {
			if q, ok := pvc(o).Status.Capacity[corev1.ResourceStorage]; ok {
				return q.String()
			}
			return ""
		}),
		Col("Access Modes", "string", func(o runtime.Object) interface{} { return AccessModes(pvc(o).Status.AccessModes) }),
		Col("StorageClass", "string", func(o runtime.Object) interface{} {
			if c := pvc(o).Spec.StorageClassName; c != nil {
				return *c
			}
			return ""
		}),
		AgeColumn,
	}
}

// ContainerNames lists a template's container names.
func ContainerNames(t *corev1.PodTemplateSpec) string {
	var n []string
	if t == nil {
		return ""
	}
	for _, c := range t.Spec.Containers {
		n = append(n, c.Name)
	}
	return strings.Join(n, ",")
}

// ContainerImages lists a template's container images.
func ContainerImages(t *corev1.PodTemplateSpec) string {
	var n []string
	if t == nil {
		return ""
	}
	for _, c := range t.Spec.Containers {
		n = append(n, c.Image)
	}
	return strings.Join(n, ",")
}
