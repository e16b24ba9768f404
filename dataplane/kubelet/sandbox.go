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

// prepareNetNSDir makes netnsDir a mount of its own and shared, as
// iproute2 does before `ip netns add`. Left a plain directory, the first
// `ip netns add` on the node (or any tool that bind-mounts the directory
// over itself) hid the pods' namespace mounts below copies: unmounting a
// copy left the original mounted, and removing the file failed with EBUSY
// for ever. A bind of a shared mount is its peer, so an unmount through
// either reaches both, and iproute2 finds the mount point and binds nothing.
func prepareNetNSDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s a shared mount: %w", netnsDir, err)
	}
	// Not a mount point yet. Namespaces a node before this one mounted here
	// would be hidden below the bind in turn: hold each by a descriptor,
	// unmount it, and mount it again on top.
	held, err := heldNetNSMounts()
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	if err != nil {
		return err
	}
	for path := range held {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s to mount it again on %s of its own: %w", path, netnsDir, err)
		}
	}
	if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s on itself: %w", netnsDir, err)
	}
	if err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", netnsDir, err)
	}
	var errs []error
	for path, f := range held {
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), path, "none", unix.MS_BIND, ""); err != nil {
			errs = append(errs, fmt.Errorf("mount the namespace at %s again: %w", path, err))
		}
	}
	return errors.Join(errs...)
}

// heldNetNSMounts opens the namespaces mounted directly in netnsDir.
func heldNetNSMounts() (map[string]*os.File, error) {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	held := map[string]*os.File{}
	for _, line := range strings.Split(string(info), "\n") {
		// id parent major:minor root mount-point ... - fstype source ...
		fields := strings.Fields(line)
		if len(fields) < 5 || filepath.Dir(fields[4]) != netnsDir || !strings.Contains(line, " - nsfs ") {
			continue
		}
		f, err := os.Open(fields[4])
		if errors.Is(err, os.ErrNotExist) {
			// Removed since the table was read, or hidden below another
			// mount (a /run of its own): nothing to mount again.
			continue
		}
		if err != nil {
			return held, fmt.Errorf("open the namespace at %s: %w", fields[4], err)
		}
		held[fields[4]] = f
	}
	return held, nil
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

// newNetwork writes petrel-cni's configuration for the node's podCIDR (and
// the pods' MTU, when set) and links the plugin to this binary.
func newNetwork(dataDir, podCIDR, pinDir string, mtu int) (*network, error) {
	if _, err := linkHelper(filepath.Join(dataDir, "cni", "bin"), "petrel-cni"); err != nil {
		return nil, fmt.Errorf("link the CNI plugin: %w", err)
	}
	plugin := map[string]any{"type": "petrel-cni", "podCIDR": podCIDR, "dataDir": filepath.Join(dataDir, "cni"), "pinDir": pinDir}
	if mtu > 0 {
		plugin["mtu"] = mtu
	}
	conf, err := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "petrel", "plugins": []any{plugin}})
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
