package kubelet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// netnsDir is where named network namespaces live, so that `ip netns` and
// network engineers see the pods' namespaces as petrel-<pod uid>.
const netnsDir = "/run/netns"

// sandbox is what a pod has on the node besides its containers: its
// network namespace and address. It is recorded in the pod's directory so
// that a restarted node adopts the pod.
type sandbox struct {
	UID       string `json:"uid"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	NetNS     string `json:"netns,omitempty"`
	IP        string `json:"ip,omitempty"`
}

func netnsPath(uid string) string { return filepath.Join(netnsDir, "petrel-"+uid) }

// newNetNS makes a network namespace and bind-mounts it at path.
func newNetNS(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The namespace is made on this thread, mounted, and the thread goes
		// back to its own namespace before Go may use it again. A thread
		// is never left to die: child processes (containerd) forked from it
		// would get their parent-death signal.
		goruntime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			goruntime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			goruntime.UnlockOSThread()
			errc <- fmt.Errorf("unshare the network namespace: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		mountErr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stuck in the new namespace: let the thread die with the
			// goroutine rather than serve others from the wrong namespace.
			errc <- fmt.Errorf("return to the host network namespace: %w", err)
			return
		}
		goruntime.UnlockOSThread()
		if mountErr != nil {
			errc <- fmt.Errorf("bind-mount the network namespace at %s: %w", path, mountErr)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// removeNetNS unmounts and removes a namespace made by newNetNS; a missing
// one is already gone.
func removeNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// network is the pod network through libcni and petrel-cni.
type network struct {
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

// newNetwork writes petrel-cni's configuration for the node's podCIDR and
// links the plugin to this binary.
func newNetwork(dataDir, podCIDR, pinDir string) (*network, error) {
	if _, err := linkHelper(filepath.Join(dataDir, "cni", "bin"), "petrel-cni"); err != nil {
		return nil, fmt.Errorf("link the CNI plugin: %w", err)
	}
	conf, err := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "petrel", "plugins": []any{
		map[string]any{"type": "petrel-cni", "podCIDR": podCIDR, "dataDir": filepath.Join(dataDir, "cni"), "pinDir": pinDir}}})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dataDir, "cni", "petrel.conflist"), conf, 0o644); err != nil {
		return nil, err
	}
	return loadNetwork(dataDir)
}

// linkHelper links name in dir to the helper binary of that name beside
// this one (make build puts petrel-cni and petrel-logger next to petrel),
// or else to this binary, which acts as either under that name. The small
// helpers start faster and, for the logger that runs beside every
// container, take far less memory.
func linkHelper(dir, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	target := self
	if helper := filepath.Join(filepath.Dir(self), name); helper != self {
		if st, err := os.Stat(helper); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			target = helper
		}
	}
	link := filepath.Join(dir, name)
	_ = os.Remove(link)
	return link, os.Symlink(target, link)
}

// loadNetwork reads the configuration newNetwork wrote; cleaning up after
// a node needs it without the API.
func loadNetwork(dataDir string) (*network, error) {
	conf, err := os.ReadFile(filepath.Join(dataDir, "cni", "petrel.conflist"))
	if err != nil {
		return nil, err
	}
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		return nil, err
	}
	binDir := filepath.Join(dataDir, "cni", "bin")
	return &network{cni: libcni.NewCNIConfigWithCacheDir([]string{binDir}, filepath.Join(dataDir, "cni", "cache"), nil), list: list}, nil
}

func runtimeConf(uid, namespace, name, netns string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: uid, NetNS: netns, IfName: "eth0", Args: [][2]string{
		{"K8S_POD_NAMESPACE", namespace}, {"K8S_POD_NAME", name}, {"K8S_POD_UID", uid}}}
}

// add connects the namespace and returns the pod's address.
func (n *network) add(ctx context.Context, pod *corev1.Pod, netns string) (string, error) {
	res, err := n.cni.AddNetworkList(ctx, n.list, runtimeConf(string(pod.UID), pod.Namespace, pod.Name, netns))
	if err != nil {
		return "", fmt.Errorf("CNI ADD: %w", err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil || len(r.IPs) == 0 {
		return "", fmt.Errorf("CNI ADD gave no address: %v", err)
	}
	return r.IPs[0].Address.IP.String(), nil
}

// del releases the pod's address and veth; deleting twice is harmless.
func (n *network) del(ctx context.Context, sb sandbox) error {
	if err := n.cni.DelNetworkList(ctx, n.list, runtimeConf(sb.UID, sb.Namespace, sb.Name, sb.NetNS)); err != nil {
		// A namespace already gone makes libcni complain about a path the
		// plugin itself does not need.
		if !strings.Contains(err.Error(), "no such file") {
			return fmt.Errorf("CNI DEL: %w", err)
		}
	}
	return nil
}
