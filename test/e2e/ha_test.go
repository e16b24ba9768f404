package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/etcd"
	"github.com/petrel-project/petrel/controlplane/leader"
	"github.com/petrel-project/petrel/test/cluster"
)

// TestHAServers runs three servers on one machine, joined into one cluster
// whose embedded etcd has three members, and checks in one run: one
// identity; the members; the kubernetes endpoints list the live servers;
// under a write load through all three, kill -9 of the controllers' leader
// loses no acknowledged write on the survivors; the controllers resume on
// another server (a Deployment scaled after the kill gets its pods within
// 15 s); the dead server leaves the endpoints within the lease time; and it
// restarts and catches up.
func TestHAServers(t *testing.T) {
	// Distinct advertise addresses (all loopback), so that the endpoints
	// tell the servers apart; they all bind 127.0.0.1 on their own ports.
	a := cluster.StartServer(t, "--advertise-address", "127.0.0.2")
	b := cluster.StartServer(t, append([]string{"--advertise-address", "127.0.0.3"}, a.JoinArgs(t)...)...)
	c := cluster.StartServer(t, append([]string{"--advertise-address", "127.0.0.4"}, b.JoinArgs(t)...)...)
	servers := []*cluster.Server{a, b, c}
	advertised := map[*cluster.Server]string{a: "127.0.0.2", b: "127.0.0.3", c: "127.0.0.4"}
	checkOneIdentity(t, a, c)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, cluster.Petrelctl(t), "etcd", "member", "list", "--data-dir", c.DataDir,
		"--endpoints", fmt.Sprintf("https://127.0.0.1:%d", c.EtcdClient)).CombinedOutput()
	if err != nil || strings.Count(string(out), " true ") < 3 {
		t.Fatalf("petrelctl etcd member list: %v\n%s", err, out)
	}
	t.Logf("etcd members:\n%s", out)

	waitEndpoints := func(via *cluster.Server, want []string, within time.Duration) {
		t.Helper()
		slices.Sort(want)
		var got []string
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			got = nil
			if es, err := via.Clientset().DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{}); err == nil {
				for _, e := range es.Endpoints {
					got = append(got, e.Addresses...)
				}
				slices.Sort(got)
				if slices.Equal(got, want) {
					return
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("kubernetes endpoints = %v after %s; want %v", got, within, want)
	}
	waitEndpoints(a, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, 20*time.Second)

	// The controllers' leader; its identity is host:port/pid.
	cli := etcdClient(t, c)
	var lead *cluster.Server
	waitFor(t, 20*time.Second, func() bool {
		lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
		defer lcancel()
		id, err := leader.Leader(lctx, cli, "controllers")
		for _, s := range servers {
			if err == nil && strings.Contains(id, fmt.Sprintf(":%d/", s.Port)) {
				lead = s
			}
		}
		return lead != nil
	})
	var survivors []*cluster.Server
	for _, s := range servers {
		if s != lead {
			survivors = append(survivors, s)
		}
	}
	t.Logf("controllers lead on port %d", lead.Port)

	// Simulated nodes talk to a survivor, so that they stay Ready.
	survivors[0].StartSimulatedNodes("ha", 2)
	cs := survivors[0].Clientset()
	waitFor(t, 30*time.Second, func() bool {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		return err == nil && len(nodes.Items) == 2
	})
	labels := map[string]string{"app": "ha-web"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "ha-web"}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10"}}}}}}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	scheduled := func(want int) func() bool {
		return func() bool {
			pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=ha-web"})
			if err != nil {
				return false
			}
			n := 0
			for _, p := range pods.Items {
				if p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
					n++
				}
			}
			return n == want
		}
	}
	waitFor(t, 30*time.Second, scheduled(1))

	// The write load: 16 clients, spread over the three servers.
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func(w int, s *cluster.Server) {
			defer wg.Done()
			cfg := s.RESTConfig()
			cfg.Timeout = 5 * time.Second
			wcs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				t.Error(err)
				return
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("load-%d-%d", w, i)
				_, err := wcs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
				if err == nil {
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
				} else {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(w, servers[w%3])
	}
	time.Sleep(2 * time.Second)
	lead.Kill()
	killed := time.Now()
	t.Logf("killed the leader (port %d)", lead.Port)

	// The controllers resume elsewhere: scaled after the kill, the
	// Deployment gets its pods within 15 s.
	waitFor(t, 10*time.Second, func() bool {
		d, err := cs.AppsV1().Deployments("default").Get(ctx, "ha-web", metav1.GetOptions{})
		if err != nil {
			return false
		}
		d.Spec.Replicas = ptr.To[int32](3)
		_, err = cs.AppsV1().Deployments("default").Update(ctx, d, metav1.UpdateOptions{})
		return err == nil
	})
	waitFor(t, 15*time.Second-time.Since(killed), scheduled(3))
	t.Logf("the scaled Deployment's pods were scheduled %s after the kill", time.Since(killed).Round(100*time.Millisecond))

	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged: the load did not run", len(acked))
	}
	allThere := func(s *cluster.Server) func() bool {
		return func() bool {
			list, err := s.Clientset().CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
			if err != nil {
				return false
			}
			have := map[string]bool{}
			for _, cm := range list.Items {
				have[cm.Name] = true
			}
			for _, n := range acked {
				if !have[n] {
					t.Logf("port %d: %s acknowledged but not (yet) listed", s.Port, n)
					return false
				}
			}
			return true
		}
	}
	for _, s := range survivors {
		waitFor(t, 10*time.Second, allThere(s))
	}
	t.Logf("%d acknowledged writes, all on both survivors", len(acked))

	// The dead server leaves the endpoints within the lease time.
	var live []string
	for _, s := range survivors {
		live = append(live, advertised[s])
	}
	waitEndpoints(survivors[0], live, etcdLeaseBound())

	// It restarts (same flags, --join included: the data dir is a member
	// already) and catches up.
	lead.Start()
	waitFor(t, 20*time.Second, allThere(lead))
	waitEndpoints(lead, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, 20*time.Second)
}

// etcdLeaseBound is how long a dead server may stay in the endpoints: the
// lease's TTL, a reconcile interval, and slack for a loaded machine.
func etcdLeaseBound() time.Duration { return 15*time.Second + 5*time.Second + 10*time.Second }

// etcdClient reaches a server's embedded etcd with its client certificate.
func etcdClient(t *testing.T, s *cluster.Server) *clientv3.Client {
	t.Helper()
	dir := etcd.PKIDir(s.DataDir)
	info := transport.TLSInfo{CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key"), TrustedCAFile: filepath.Join(dir, "ca.crt")}
	tlsConfig, err := info.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig.MinVersion = tls.VersionTLS12
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{fmt.Sprintf("https://127.0.0.1:%d", s.EtcdClient)}, TLS: tlsConfig,
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
