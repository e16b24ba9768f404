package kubelet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/dataplane/kubelet/podenv"
	"github.com/petrel-project/petrel/dataplane/kubelet/podvolume"
)

// errMount is a volume that cannot be set up yet: the pod waits in
// ContainerCreating with a FailedMount event, as on Kubernetes.
type errMount struct{ err error }

func (e errMount) Error() string { return e.err.Error() }
func (e errMount) Unwrap() error { return e.err }

// podFiles writes what every container of the pod mounts: /etc/hosts,
// /etc/resolv.conf and /etc/hostname.
func (k *Kubelet) podFiles(pod *corev1.Pod, dir, ip string) error {
	host := podHostname(pod)
	fqdn := host
	if pod.Spec.Subdomain != "" {
		fqdn = fmt.Sprintf("%s.%s.%s.svc.%s", host, pod.Spec.Subdomain, pod.Namespace, k.cfg.ClusterDomain)
	}
	var hosts strings.Builder
	// The first line is how tools (and the conformance suite) tell a
	// kubelet-managed file from the image's own.
	hosts.WriteString("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	if pod.Spec.HostNetwork {
		if h, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts.Reset()
			hosts.Write(h)
		}
	} else if ip != "" {
		if fqdn != host {
			fmt.Fprintf(&hosts, "%s\t%s\t%s\n", ip, fqdn, host)
		} else {
			fmt.Fprintf(&hosts, "%s\t%s\n", ip, host)
		}
	}
	for _, a := range pod.Spec.HostAliases {
		fmt.Fprintf(&hosts, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
	}
	resolv, err := k.resolvConf(pod)
	if err != nil {
		return err
	}
	for name, body := range map[string]string{"hosts": hosts.String(), "resolv.conf": resolv, "hostname": host + "\n"} {
		// Bind-mounted file by file: rewritten in place, and only when it
		// changed, so that a container never reads it half-written.
		path := filepath.Join(dir, name)
		if old, err := os.ReadFile(path); err == nil && string(old) == body {
			continue
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func podHostname(pod *corev1.Pod) string {
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// resolvConf follows the pod's dnsPolicy and dnsConfig.
func (k *Kubelet) resolvConf(pod *corev1.Pod) (string, error) {
	var servers, search, options []string
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if policy == corev1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = corev1.DNSDefault
	}
	switch policy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet:
		d := k.cfg.ClusterDomain
		servers = []string{k.cfg.ClusterDNS}
		search = []string{pod.Namespace + ".svc." + d, "svc." + d, d}
		options = []string{"ndots:5"}
	case corev1.DNSDefault:
		servers, search, options = hostResolvConf()
	}
	if c := pod.Spec.DNSConfig; c != nil {
		servers = append(servers, c.Nameservers...)
		search = append(search, c.Searches...)
		for _, o := range c.Options {
			if o.Value != nil {
				options = append(options, o.Name+":"+*o.Value)
			} else {
				options = append(options, o.Name)
			}
		}
	}
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.String(), nil
}

func hostResolvConf() (servers, search, options []string) {
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return nil, nil, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			servers = append(servers, fields[1])
		case "search", "domain":
			search = append(search, fields[1:]...)
		case "options":
			options = append(options, fields[1:]...)
		}
	}
	return servers, search, options
}

// volumes sets up the pod's volumes under dir/volumes and returns the host
// path of each by name.
func (k *Kubelet) volumes(ctx context.Context, pod *corev1.Pod, dir string) (map[string]string, error) {
	paths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		p := filepath.Join(dir, "volumes", v.Name)
		var err error
		switch {
		case v.EmptyDir != nil:
			err = podvolume.EmptyDir(p, v.EmptyDir)
		case v.HostPath != nil:
			p = v.HostPath.Path
			err = hostPathVolume(v.HostPath)
		case v.ConfigMap != nil:
			err = k.writeFiles(ctx, pod, p, v.ConfigMap.DefaultMode, []corev1.VolumeProjection{{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: v.ConfigMap.LocalObjectReference, Items: v.ConfigMap.Items, Optional: v.ConfigMap.Optional}}})
		case v.Secret != nil:
			err = k.writeFiles(ctx, pod, p, v.Secret.DefaultMode, []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: v.Secret.SecretName}, Items: v.Secret.Items, Optional: v.Secret.Optional}}})
		case v.DownwardAPI != nil:
			err = k.writeFiles(ctx, pod, p, v.DownwardAPI.DefaultMode, []corev1.VolumeProjection{{DownwardAPI: &corev1.DownwardAPIProjection{Items: v.DownwardAPI.Items}}})
		case v.Projected != nil:
			err = k.writeFiles(ctx, pod, p, v.Projected.DefaultMode, v.Projected.Sources)
		case v.PersistentVolumeClaim != nil:
			p, err = k.claimPath(ctx, pod.Namespace, v.PersistentVolumeClaim.ClaimName)
		default:
			err = errMount{fmt.Errorf("volume %q: this kind of volume is not supported by Petrel yet", v.Name)}
		}
		if err != nil {
			return nil, err
		}
		paths[v.Name] = p
	}
	return paths, nil
}

// writeFiles fills a configMap, secret, downwardAPI or projected volume;
// it runs at every sync, so the files follow their objects.
func (k *Kubelet) writeFiles(ctx context.Context, pod *corev1.Pod, dir string, defaultMode *int32, sources []corev1.VolumeProjection) error {
	mode := os.FileMode(0o644)
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode)
	}
	files := map[string][]byte{}
	modes := map[string]os.FileMode{}
	take := func(data map[string][]byte, items []corev1.KeyToPath, what string) error {
		if len(items) == 0 {
			for key, v := range data {
				files[key] = v
			}
			return nil
		}
		for _, it := range items {
			v, ok := data[it.Key]
			if !ok {
				return errMount{fmt.Errorf("%s has no key %q", what, it.Key)}
			}
			files[it.Path] = v
			if it.Mode != nil {
				modes[it.Path] = os.FileMode(*it.Mode)
			}
		}
		return nil
	}
	for _, s := range sources {
		switch {
		case s.ConfigMap != nil:
			cm, err := k.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, s.ConfigMap.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && s.ConfigMap.Optional != nil && *s.ConfigMap.Optional {
				continue
			}
			if err != nil {
				return errMount{fmt.Errorf("configmap %q: %w", s.ConfigMap.Name, err)}
			}
			data := map[string][]byte{}
			for key, v := range cm.Data {
				data[key] = []byte(v)
			}
			for key, v := range cm.BinaryData {
				data[key] = v
			}
			if err := take(data, s.ConfigMap.Items, "configmap "+cm.Name); err != nil {
				return err
			}
		case s.Secret != nil:
			sec, err := k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, s.Secret.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && s.Secret.Optional != nil && *s.Secret.Optional {
				continue
			}
			if err != nil {
				return errMount{fmt.Errorf("secret %q: %w", s.Secret.Name, err)}
			}
			data := map[string][]byte{}
			for key, v := range sec.Data {
				data[key] = v
			}
			for key, v := range sec.StringData {
				data[key] = []byte(v)
			}
			if err := take(data, s.Secret.Items, "secret "+sec.Name); err != nil {
				return err
			}
		case s.DownwardAPI != nil:
			for _, it := range s.DownwardAPI.Items {
				var v string
				var err error
				switch {
				case it.FieldRef != nil:
					v, err = podenv.FieldRef(pod, it.FieldRef.FieldPath, "", k.hostIP)
				case it.ResourceFieldRef != nil:
					v, err = podenv.ResourceField(pod, it.ResourceFieldRef, k.allocatable)
				}
				if err != nil {
					return errMount{err}
				}
				files[it.Path] = []byte(v)
				if it.Mode != nil {
					modes[it.Path] = os.FileMode(*it.Mode)
				}
			}
		case s.ServiceAccountToken != nil:
			tok, err := k.serviceAccountToken(ctx, pod, s.ServiceAccountToken)
			if err != nil {
				return err
			}
			files[s.ServiceAccountToken.Path] = tok
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	keep := make(map[string]bool, len(files))
	for path, body := range files {
		full := filepath.Join(dir, filepath.Clean("/"+path))
		keep[full] = true
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		m := mode
		if pm, ok := modes[path]; ok {
			m = pm
		}
		if err := podvolume.ReplaceFile(full, body, m); err != nil {
			return err
		}
	}
	return podvolume.Prune(dir, keep)
}

// claimPath is the host directory of the local (or hostPath) volume a
// bound claim points at.
func (k *Kubelet) claimPath(ctx context.Context, namespace, claim string) (string, error) {
	pvc, err := k.client.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return "", errMount{fmt.Errorf("persistentvolumeclaim %q: %w", claim, err)}
	}
	if pvc.Spec.VolumeName == "" {
		return "", errMount{fmt.Errorf("persistentvolumeclaim %q is not bound to a volume", claim)}
	}
	pv, err := k.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", errMount{fmt.Errorf("persistentvolume %q: %w", pvc.Spec.VolumeName, err)}
	}
	switch {
	case pv.Spec.Local != nil:
		return pv.Spec.Local.Path, nil
	case pv.Spec.HostPath != nil:
		return pv.Spec.HostPath.Path, hostPathVolume(pv.Spec.HostPath)
	}
	return "", errMount{fmt.Errorf("persistentvolume %q is neither local nor hostPath", pv.Name)}
}

// mounts turns a container's volumeMounts into OCI bind mounts, with the
// pod's hosts, resolv.conf and hostname files. vars are the container's
// environment, which subPathExpr is expanded with.
func mounts(c *corev1.Container, podDir string, volumes map[string]string, vars map[string]string) ([]specs.Mount, error) {
	var out []specs.Mount
	bind := func(dst, src string, ro bool) {
		opt := "rw"
		if ro {
			opt = "ro"
		}
		out = append(out, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", opt}})
	}
	for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
		bind("/etc/"+f, filepath.Join(podDir, f), false)
	}
	for _, m := range c.VolumeMounts {
		src, ok := volumes[m.Name]
		if !ok {
			return nil, errMount{fmt.Errorf("volumeMount %q of container %q names no volume of the pod", m.Name, c.Name)}
		}
		sub := m.SubPath
		if m.SubPathExpr != "" {
			var err error
			if sub, err = podenv.SubPath(m.SubPathExpr, vars); err != nil {
				return nil, errConfig{fmt.Errorf("volumeMount %q of container %q: %w", m.Name, c.Name, err)}
			}
		}
		if sub != "" {
			src = filepath.Join(src, filepath.Clean("/"+sub))
			if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, err
				}
			}
		}
		bind(m.MountPath, src, m.ReadOnly)
	}
	return out, nil
}

// hostPathVolume checks (or makes) a hostPath volume's path; a path that is
// not of the type the volume says waits as a FailedMount.
func hostPathVolume(v *corev1.HostPathVolumeSource) error {
	err := podvolume.HostPath(v)
	var mismatch *podvolume.MismatchError
	if errors.As(err, &mismatch) {
		return errMount{err}
	}
	return err
}
