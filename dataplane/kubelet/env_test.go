package kubelet

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func TestEnvResolution(t *testing.T) {
	cs := fake.NewClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "ns"}, Data: map[string]string{"color": "blue", "size": "L"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "ns"}, Data: map[string][]byte{"token": []byte("s3cret")}})
	k := &Kubelet{client: cs, allocatable: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u-1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m")}},
			EnvFrom:   []corev1.EnvFromSource{{Prefix: "CM_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
			Env: []corev1.EnvVar{
				{Name: "GREETING", Value: "hello $(CM_color)"},
				{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
				{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
				{Name: "CPU", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
				{Name: "MEM_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
				{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "token"}}},
				{Name: "OPT", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}, Key: "k", Optional: ptr.To(true)}}},
			}}}}}
	env, _, err := k.env(context.Background(), pod, &pod.Spec.Containers[0], "10.244.0.9")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(env, ";")
	want := "CM_color=blue;CM_size=L;GREETING=hello blue;POD=p;APP=web;IP=10.244.0.9;CPU=2;MEM_MI=1024;TOKEN=s3cret"
	// envFrom keys come from a map: compare the env part exactly, the rest as a set.
	if !strings.HasSuffix(got, want[strings.Index(want, "GREETING"):]) || !strings.Contains(got, "CM_color=blue") || !strings.Contains(got, "CM_size=L") {
		t.Fatalf("env\n got  %s\n want %s", got, want)
	}

	// A missing required key is a config error, as CreateContainerConfigError.
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "absent"}}}}
	_, _, err = k.env(context.Background(), pod, &pod.Spec.Containers[0], "")
	var cfgErr errConfig
	if err == nil || !asErrConfig(err, &cfgErr) || !strings.Contains(err.Error(), `no key "absent"`) {
		t.Fatalf("missing key: %v", err)
	}
}

func asErrConfig(err error, target *errConfig) bool {
	e, ok := err.(errConfig)
	if ok {
		*target = e
	}
	return ok
}

func TestResolvConf(t *testing.T) {
	k := &Kubelet{cfg: Config{ClusterDNS: "10.96.0.10", ClusterDomain: "cluster.local"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"}}
	got, _ := k.resolvConf(pod)
	want := "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
	if got != want {
		t.Fatalf("ClusterFirst:\n%s\nwant\n%s", got, want)
	}
	pod.Spec.DNSPolicy = corev1.DNSNone
	pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.53"}, Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr.To("2")}}}
	got, _ = k.resolvConf(pod)
	if got != "nameserver 192.0.2.53\noptions ndots:2\n" {
		t.Fatalf("None with dnsConfig:\n%s", got)
	}
}

func TestArgvAndPolicies(t *testing.T) {
	long := strings.Repeat("a", 70)
	if h := podHostname(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: long}}); len(h) != 63 {
		t.Fatalf("hostname not cut to 63: %d", len(h))
	}
	init := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyAlways}}
	if policyOf(init, true) != corev1.RestartPolicyOnFailure || policyOf(init, false) != corev1.RestartPolicyAlways {
		t.Fatal("init containers of an Always pod restart only on failure")
	}
	if restartable(corev1.RestartPolicyOnFailure, 0) || !restartable(corev1.RestartPolicyOnFailure, 1) || restartable(corev1.RestartPolicyNever, 1) {
		t.Fatal("restart policy table")
	}
}

func TestServiceEnv(t *testing.T) {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, s := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "my-db", Namespace: "shop"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.5.5", Ports: []corev1.ServicePort{{Name: "sql", Port: 5432, Protocol: corev1.ProtocolTCP}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "headless", Namespace: "shop"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Port: 80}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "other"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.9.9", Ports: []corev1.ServicePort{{Port: 80}}}},
	} {
		_ = idx.Add(s)
	}
	k := &Kubelet{services: corelisters.NewServiceLister(idx)}
	env := map[string]string{}
	for _, kv := range k.serviceEnv(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop"}}) {
		env[kv[0]] = kv[1]
	}
	for name, want := range map[string]string{
		"KUBERNETES_SERVICE_HOST":      "10.96.0.1",
		"KUBERNETES_SERVICE_PORT":      "443",
		"MY_DB_SERVICE_HOST":           "10.96.5.5",
		"MY_DB_SERVICE_PORT_SQL":       "5432",
		"MY_DB_PORT":                   "tcp://10.96.5.5:5432",
		"MY_DB_PORT_5432_TCP_ADDR":     "10.96.5.5",
		"MY_DB_PORT_5432_TCP_PROTO":    "tcp",
		"KUBERNETES_PORT_443_TCP":      "tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP_PORT": "443",
	} {
		if env[name] != want {
			t.Errorf("%s = %q, want %q", name, env[name], want)
		}
	}
	if _, ok := env["HEADLESS_SERVICE_HOST"]; ok {
		t.Error("a headless Service has no variables")
	}
	if _, ok := env["ELSEWHERE_SERVICE_HOST"]; ok {
		t.Error("another namespace's Service leaked in")
	}
	// Links off: only the API server's.
	env = map[string]string{}
	for _, kv := range k.serviceEnv(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop"}, Spec: corev1.PodSpec{EnableServiceLinks: ptr.To(false)}}) {
		env[kv[0]] = kv[1]
	}
	if env["KUBERNETES_SERVICE_HOST"] != "10.96.0.1" || env["MY_DB_SERVICE_HOST"] != "" {
		t.Errorf("enableServiceLinks false: %v", env)
	}
}

func TestImageRef(t *testing.T) {
	for name, want := range map[string]string{
		"petrel.local/testserver:1":        "petrel.local/testserver@sha256:ab",
		"localhost:5000/app":               "localhost:5000/app@sha256:ab",
		"docker.io/library/busybox:latest": "docker.io/library/busybox@sha256:ab",
	} {
		if got := imageRef(name, "sha256:ab"); got != want {
			t.Errorf("imageRef(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestHostIPBeforeStatus: status.hostIP comes from the node, since a pod's
// first containers start before its status names the host.
func TestHostIPBeforeStatus(t *testing.T) {
	k := &Kubelet{client: fake.NewClientset(), hostIP: "198.51.100.4"}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c",
		Env: []corev1.EnvVar{{Name: "HOST_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}}}}}}}
	env, _, err := k.env(context.Background(), pod, &pod.Spec.Containers[0], "10.244.0.9")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(env, ";"), "HOST_IP=198.51.100.4") {
		t.Fatalf("env %v", env)
	}
}
