// Package podenv computes what a pod's containers are given as values: the
// downward API's fields and resources, $(VAR) expansion as Kubernetes does
// it (in commands, args, env and subPathExpr), and the Service link
// variables. It reads nothing from the API: the kubelet hands it the pod,
// the node's figures and the Services.
package podenv

import (
	"fmt"
	"math"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// FieldRef answers the downward API's field paths.
func FieldRef(pod *corev1.Pod, path, podIP, hostIP string) (string, error) {
	if podIP == "" {
		podIP = pod.Status.PodIP
	}
	if key, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(key, "']")], nil
	}
	if key, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(key, "']")], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		// The node's address, as the kubelet knows it: the pod's status
		// does not carry it yet when its first containers start.
		if hostIP != "" {
			return hostIP, nil
		}
		return pod.Status.HostIP, nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

func formatMap(m map[string]string) string {
	var b strings.Builder
	for k, v := range m {
		fmt.Fprintf(&b, "%s=%q\n", k, v)
	}
	return b.String()
}

// ResourceField is a container's request or limit in the divisor's
// units, rounded up; an unset limit is the node's allocatable.
func ResourceField(pod *corev1.Pod, ref *corev1.ResourceFieldSelector, allocatable corev1.ResourceList) (string, error) {
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == ref.ContainerName {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		return "", fmt.Errorf("resourceFieldRef names container %q, which the pod does not have", ref.ContainerName)
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("unsupported resource %q", ref.Resource)
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		q = allocatable[corev1.ResourceName(name)]
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == "cpu" {
		return fmt.Sprint(int64(math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue())))), nil
	}
	return fmt.Sprint(int64(math.Ceil(float64(q.Value()) / float64(divisor.Value())))), nil
}

// Expand replaces $(NAME) with the variable's value as Kubernetes does:
// $$ escapes a dollar, and references to unknown names stay as written.
func Expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// ExpandAll is Expand over each of in.
func ExpandAll(in []string, vars map[string]string) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = Expand(s, vars)
	}
	return out
}

// SubPath is a subPathExpr with the container's variables put in. The
// API checks the expression, not what it expands to, so the result must
// still stay inside the volume: no absolute path, no step up. A container
// whose subpath breaks that waits with CreateContainerConfigError until the
// values it is made from (an annotation, say) change.
func SubPath(expr string, vars map[string]string) (string, error) {
	sub := Expand(expr, vars)
	if filepath.IsAbs(sub) {
		return "", fmt.Errorf("subPathExpr %q expands to %q, an absolute path; it must be relative to the volume", expr, sub)
	}
	for _, part := range strings.Split(filepath.ToSlash(sub), "/") {
		if part == ".." {
			return "", fmt.Errorf("subPathExpr %q expands to %q, which steps out of the volume with '..'", expr, sub)
		}
	}
	return sub, nil
}

// ServiceLinks are the Docker-links-style variables of these Services
// (FOO_SERVICE_HOST, FOO_PORT_80_TCP_ADDR, ...), as the kubelet sets them,
// in the order of the Services' names.
func ServiceLinks(svcs []*corev1.Service) [][2]string {
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
	var out [][2]string
	seen := map[string]bool{}
	for _, svc := range svcs {
		ip := svc.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 || seen[svc.Name] {
			continue
		}
		seen[svc.Name] = true
		name := envName(svc.Name)
		first := svc.Spec.Ports[0]
		out = append(out, [2]string{name + "_SERVICE_HOST", ip}, [2]string{name + "_SERVICE_PORT", strconv.Itoa(int(first.Port))})
		for _, p := range svc.Spec.Ports {
			if p.Name != "" {
				out = append(out, [2]string{name + "_SERVICE_PORT_" + envName(p.Name), strconv.Itoa(int(p.Port))})
			}
		}
		proto := strings.ToLower(string(first.Protocol))
		out = append(out, [2]string{name + "_PORT", fmt.Sprintf("%s://%s", proto, net.JoinHostPort(ip, strconv.Itoa(int(first.Port))))})
		for _, p := range svc.Spec.Ports {
			prefix := fmt.Sprintf("%s_PORT_%d_%s", name, p.Port, strings.ToUpper(string(p.Protocol)))
			out = append(out,
				[2]string{prefix, fmt.Sprintf("%s://%s", strings.ToLower(string(p.Protocol)), net.JoinHostPort(ip, strconv.Itoa(int(p.Port))))},
				[2]string{prefix + "_PROTO", strings.ToLower(string(p.Protocol))},
				[2]string{prefix + "_PORT", strconv.Itoa(int(p.Port))},
				[2]string{prefix + "_ADDR", ip})
		}
	}
	return out
}

func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
