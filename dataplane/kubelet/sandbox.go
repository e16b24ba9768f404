package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
)

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
