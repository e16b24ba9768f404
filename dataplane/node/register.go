package node

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/dataplane/runtime"
)

// NoRuntimeTaint keeps pods off a node that cannot run them yet.
const NoRuntimeTaint = "node.petrel.io/no-container-runtime"

// DefaultLeaseRenewInterval is how often a node renews its Lease, as
// kubelets do; the node lifecycle controller's grace period must be longer.
const DefaultLeaseRenewInterval = 10 * time.Second

const leaseDuration = 40 * time.Second

// register creates or refreshes the Node with the machine's capacity,
// addresses and a Ready condition.
func register(ctx context.Context, cs kubernetes.Interface, opts Options, rt *runtime.Containerd) error {
	capacity := machineCapacity()
	now := metav1.Now()
	message := "service proxy and cluster DNS are running; pods are not run (no container runtime)"
	var images []corev1.ContainerImage
	runtimeVersion := ""
	if rt != nil {
		message = "kubelet on containerd, service proxy and cluster DNS are running"
		var err error
		if images, err = statusImages(ctx, rt); err != nil {
			return err
		}
		if v, err := rt.Client.Version(ctx); err == nil {
			runtimeVersion = "containerd://" + v.Version
		}
	}
	status := corev1.NodeStatus{
		Images:          images,
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(opts.nodeServerPort)}},
		Capacity:        capacity,
		Allocatable:     capacity,
		Addresses:       nodeAddresses(opts.NodeName),
		Conditions: []corev1.NodeCondition{
			// No eviction under pressure yet: these say so plainly rather
			// than leave kubectl describe with gaps.
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory",
				Message: "no memory pressure eviction on Petrel nodes yet", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure",
				Message: "no disk pressure eviction on Petrel nodes yet", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID",
				Message: "no PID pressure eviction on Petrel nodes yet", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "PetrelNodeReady",
				Message: message, LastHeartbeatTime: now, LastTransitionTime: now}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.32.0-petrel", KubeProxyVersion: "v1.32.0-petrel", ContainerRuntimeVersion: runtimeVersion,
			OperatingSystem: goruntime.GOOS, Architecture: goruntime.GOARCH, KernelVersion: kernelVersion(), OSImage: osImage()},
	}
	for _, h := range opts.ociRuntimes {
		// The RuntimeClass handlers pods may name on this node.
		status.RuntimeHandlers = append(status.RuntimeHandlers, corev1.NodeRuntimeHandler{Name: h})
	}
	nodes := cs.CoreV1().Nodes()
	return retry.OnError(retry.DefaultBackoff, func(err error) bool { return !apierrors.IsInvalid(err) }, func() error {
		n, err := nodes.Get(ctx, opts.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			n = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: opts.NodeName, Labels: map[string]string{
				corev1.LabelHostname: opts.NodeName, corev1.LabelOSStable: goruntime.GOOS, corev1.LabelArchStable: goruntime.GOARCH}},
			}
			if rt == nil {
				n.Spec.Taints = []corev1.Taint{{Key: NoRuntimeTaint, Effect: corev1.TaintEffectNoSchedule}}
			}
			if n, err = nodes.Create(ctx, n, metav1.CreateOptions{}); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if rt != nil && hasTaint(n, NoRuntimeTaint) {
			var kept []corev1.Taint
			for _, t := range n.Spec.Taints {
				if t.Key != NoRuntimeTaint {
					kept = append(kept, t)
				}
			}
			n.Spec.Taints = kept
			if n, err = nodes.Update(ctx, n, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
		n.Status = status
		_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// machineCapacity is what the machine offers pods.
func machineCapacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(memTotal(), resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
	}
}

// keepLease renews the node's Lease in kube-node-lease, as kubelets do, so
// that the node lifecycle controller sees the node alive.
func keepLease(ctx context.Context, cs kubernetes.Interface, opts Options, rt *runtime.Containerd) {
	name := opts.NodeName
	leases := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	for {
		if err := renew(ctx, leases, name); err != nil && ctx.Err() == nil {
			slog.Warn("node: lease renewal failed; retrying", "err", err)
		}
		// Back after a silence the node lifecycle controller noticed: say
		// Ready again.
		// Also when the images changed, so that Node.status.images follows
		// imports.
		if n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err == nil && (!ready(n) || imagesChanged(ctx, n, rt)) {
			if err := register(ctx, cs, opts, rt); err != nil && ctx.Err() == nil {
				slog.Warn("node: status update failed; retrying", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(opts.LeaseRenewInterval):
		}
	}
}

func renew(ctx context.Context, leases interface {
	Get(context.Context, string, metav1.GetOptions) (*coordinationv1.Lease, error)
	Create(context.Context, *coordinationv1.Lease, metav1.CreateOptions) (*coordinationv1.Lease, error)
	Update(context.Context, *coordinationv1.Lease, metav1.UpdateOptions) (*coordinationv1.Lease, error)
}, name string) error {
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To(int32(leaseDuration.Seconds())),
				AcquireTime: &now, RenewTime: &now}}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.RenewTime = &now
	l.Spec.HolderIdentity = ptr.To(name)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(leaseDuration.Seconds()))
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// nodeAddresses are the host name and the address of the default route's
// interface (what other nodes reach this one at).
func nodeAddresses(name string) []corev1.NodeAddress {
	out := []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}}
	// A UDP "connection" sends nothing; it only makes the kernel pick the
	// source address of the default route.
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err == nil {
		ip := c.LocalAddr().(*net.UDPAddr).IP.String()
		c.Close()
		out = append([]corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}, out...)
	}
	return out
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func kernelVersion() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func osImage() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return goruntime.GOOS
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return fmt.Sprint(goruntime.GOOS)
}

func hasTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

func imagesChanged(ctx context.Context, n *corev1.Node, rt *runtime.Containerd) bool {
	if rt == nil {
		return false
	}
	imgs, err := statusImages(ctx, rt)
	return err == nil && !equality.Semantic.DeepEqual(imgs, n.Status.Images)
}

// maxStatusImages bounds Node.status.images, as the kubelet's
// --node-status-max-images (50) does: a node with many images would
// otherwise make the Node, and every watch event of it, large.
const maxStatusImages = 50

// statusImages is Node.status.images: the largest images first, at most
// maxStatusImages.
func statusImages(ctx context.Context, rt *runtime.Containerd) ([]corev1.ContainerImage, error) {
	imgs, err := runtime.NodeImages(ctx, rt.Client)
	if len(imgs) > maxStatusImages {
		imgs = imgs[:maxStatusImages]
	}
	return imgs, err
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
