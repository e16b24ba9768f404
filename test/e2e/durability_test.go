package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/petrel-project/petrel/controlplane/leader"
	"github.com/petrel-project/petrel/test/cluster"
)

// TestCrashLosesNoAcknowledgedWrite kills the server with SIGKILL under a write
// load and checks that every create that got a 201 is there after a restart.
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	s := cluster.StartServer(t)
	cs := s.Clientset()
	held := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.100.100",
			Ports: []corev1.ServicePort{{Port: 80, NodePort: 30100}}}}
	}
	if _, err := cs.CoreV1().Services("default").Create(context.Background(), held("held"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": name}}, metav1.CreateOptions{})
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
				} else {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(w)
	}
	time.Sleep(1500 * time.Millisecond)
	s.Kill()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	if n < 50 {
		t.Fatalf("only %d writes acknowledged before the kill; the load did not run", n)
	}
	s.Start()
	list, err := s.Clientset().CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, c := range list.Items {
		if c.Name == "kube-root-ca.crt" {
			continue // the root CA publisher's, in every namespace
		}
		if c.Data["i"] != c.Name {
			t.Fatalf("configmap %s has wrong data %v", c.Name, c.Data)
		}
		have[c.Name] = true
	}
	for _, name := range acked {
		if !have[name] {
			t.Fatalf("acknowledged write %s lost after kill -9 (%d acknowledged, %d present)", name, n, len(have))
		}
	}
	t.Logf("%d acknowledged writes, all present after kill -9 and restart", n)
	// Allocations survive the crash: the address and port are still taken.
	_, err = s.Clientset().CoreV1().Services("default").Create(context.Background(), held("again"), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "already allocated") {
		t.Fatalf("ClusterIP/NodePort handed out twice after a restart: %v", err)
	}
}

// TestExternalEtcd runs the server against Debian's etcd started here, and
// checks that the data lives there: a second server on the same etcd sees it.
// startEtcd starts Debian's etcd on free loopback ports and returns its client URL.
func startEtcd(t *testing.T) string {
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd-server is not installed (make test installs it)")
	}
	dir := t.TempDir()
	cport, pport := cluster.FreePort(t), cluster.FreePort(t)
	curl, purl := fmt.Sprintf("http://127.0.0.1:%d", cport), fmt.Sprintf("http://127.0.0.1:%d", pport)
	cmd := exec.Command(etcdBin, "--data-dir", filepath.Join(dir, "etcd"), "--name", "ext",
		"--listen-client-urls", curl, "--advertise-client-urls", curl,
		"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl, "--initial-cluster", "ext="+purl)
	logf, _ := os.Create(filepath.Join(dir, "etcd.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return curl
}

func TestExternalEtcd(t *testing.T) {
	curl := startEtcd(t)
	s := cluster.StartServer(t, "--etcd-endpoints", curl)
	if _, err := os.Stat(filepath.Join(s.DataDir, "etcd")); err == nil {
		t.Fatal("an embedded etcd data dir was created although --etcd-endpoints was given")
	}
	mustCreateCM(t, s.Clientset(), "on-external", map[string]string{"where": "external"})

	// A second server with a fresh data dir that does not join is refused:
	// it would make a CA of its own.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, cluster.Binary(t), "server", "--data-dir", t.TempDir(), "--bind-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(cluster.FreePort(t)), "--etcd-endpoints", curl).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--join") {
		t.Fatalf("a second server that did not join started (or failed otherwise): %v\n%s", err, out)
	}

	// One that joins shares the data, and goes on when the first stops.
	s2 := cluster.StartServer(t, append([]string{"--etcd-endpoints", curl}, s.JoinArgs(t)...)...)
	s.Stop()
	cm, err := s2.Clientset().CoreV1().ConfigMaps("default").Get(context.Background(), "on-external", metav1.GetOptions{})
	if err != nil || cm.Labels["where"] != "external" {
		t.Fatalf("object not found through the external etcd: %v", err)
	}
}

// TestLeaderFailover runs two servers on one etcd: one leads the controllers;
// when it is killed, the other takes over and namespace deletion still
// completes.
func TestLeaderFailover(t *testing.T) {
	curl := startEtcd(t)
	a := cluster.StartServer(t, "--etcd-endpoints", curl)
	b := cluster.StartServer(t, append([]string{"--etcd-endpoints", curl}, a.JoinArgs(t)...)...)
	checkOneIdentity(t, a, b)
	rootCA := func(s *cluster.Server) string {
		var data string
		waitFor(t, 20*time.Second, func() bool {
			cm, err := s.Clientset().CoreV1().ConfigMaps("default").Get(context.Background(), "kube-root-ca.crt", metav1.GetOptions{})
			if err == nil {
				data = cm.Data["ca.crt"]
			}
			return data != ""
		})
		return data
	}
	caBefore := rootCA(a)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{curl}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	leaderPort := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		id, err := leader.Leader(ctx, cli, "controllers")
		if err != nil {
			return 0
		}
		// identity is host:port/pid
		var port, pid int
		if i := strings.LastIndex(id, ":"); i >= 0 {
			fmt.Sscanf(id[i+1:], "%d/%d", &port, &pid)
		}
		return port
	}
	var first int
	waitFor(t, 20*time.Second, func() bool { first = leaderPort(); return first == a.Port || first == b.Port })
	lead, standby := a, b
	if first == b.Port {
		lead, standby = b, a
	}
	lead.Kill()
	waitFor(t, 30*time.Second, func() bool { return leaderPort() == standby.Port })

	cs := standby.Clientset()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "after-failover"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("after-failover").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Namespaces().Delete(ctx, "after-failover", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool {
		_, err := cs.CoreV1().Namespaces().Get(ctx, "after-failover", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	// The new leader's root CA publisher has the same CA: nothing rewritten.
	if after := rootCA(standby); after != caBefore {
		t.Fatalf("kube-root-ca.crt changed after the leader change:\nbefore %q\nafter  %q", caBefore, after)
	}
}

// checkOneIdentity checks that servers that joined one cluster share its
// identity: a's admin client certificate and a service account token issued
// by a are accepted by b, and the reverse.
func checkOneIdentity(t *testing.T, a, b *cluster.Server) {
	t.Helper()
	ctx := context.Background()
	for _, pair := range [][2]*cluster.Server{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		cfg := from.RESTConfig()
		cfg.Host = to.URL()
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Fatalf("the admin certificate of the server on port %d is refused on port %d: %v", from.Port, to.Port, err)
		}
		var tok *authenticationv1.TokenRequest
		waitFor(t, 20*time.Second, func() bool { // the service account controller makes "default"
			tok, err = from.Clientset().CoreV1().ServiceAccounts("default").CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			return err == nil
		})
		saCfg := &rest.Config{Host: to.URL(), BearerToken: tok.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: cfg.TLSClientConfig.CAData, CAFile: cfg.TLSClientConfig.CAFile}}
		sacs, err := kubernetes.NewForConfig(saCfg)
		if err != nil {
			t.Fatal(err)
		}
		// The default service account may not list much; a 403 still means
		// the token was accepted (a foreign token gets 401).
		_, err = sacs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil && !apierrors.IsForbidden(err) {
			t.Fatalf("a service account token issued on port %d is refused on port %d: %v", from.Port, to.Port, err)
		}
	}
}
