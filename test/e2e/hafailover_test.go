package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/etcd"
	"github.com/petrel-project/petrel/controlplane/leader"
	"github.com/petrel-project/petrel/test/cluster"
	"github.com/petrel-project/petrel/test/images"
)

// TestHAFailover is issue 19's failover on real nodes: three servers, each
// at its own address on the nodes' segment and joined into one cluster
// (three etcd members), and two nodes in network namespaces that were given
// all three servers (their clients go through the node's server load
// balancer). The subtests share the cluster and run in order:
//   - etcd refuses a client without a certificate on its client and peer
//     ports;
//   - under a write load through all servers, kill -9 of the controllers'
//     leader: every acknowledged write is on every survivor, a Deployment
//     scaled after the kill gets its pods within 15 s, the nodes stay Ready
//     and no pod is evicted, client-go informers on the survivors do not
//     list again; the killed server restarts and catches up;
//   - kill -9 of two servers: a write through the third fails within its
//     timeout with an error (no hang), nothing acknowledged is lost, and
//     writes work again once one returns.
func TestHAFailover(t *testing.T) {
	m := cluster.StartMulti(t, cluster.MultiOptions{Nodes: 2, Segments: 1, Servers: 3,
		// A node that cannot reach any server for 20 s goes NotReady: its
		// failing over must take less.
		ServerArgs: []string{"--node-monitor-grace-period", "20s"}, NodeArgs: []string{"--lease-renew-interval", "2s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	archive, err := images.BuildTestServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ImportImage(ctx, archive); err != nil {
		t.Fatal(err)
	}
	servers := m.Servers

	t.Run("etcd refuses clients without a certificate", func(t *testing.T) {
		var wg sync.WaitGroup
		for _, s := range servers {
			wg.Add(1)
			go func() { defer wg.Done(); checkEtcdClosed(t, s) }()
		}
		wg.Wait()
	})

	var acked []string
	var ackedMu sync.Mutex
	t.Run("leader killed under load", func(t *testing.T) {
		lead := controllersLeader(t, ctx, servers)
		var survivors []*cluster.Server
		for _, s := range servers {
			if s != lead {
				survivors = append(survivors, s)
			}
		}
		t.Logf("controllers lead on %s; the nodes were given %s first", lead.Host, servers[0].Host)
		cs := survivors[0].Clientset()
		labels := map[string]string{"app": "ha-web"}
		tmpl := testPod("", labels)
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "ha-web"}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: tmpl.Spec}}}
		if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		podsOf := func() []corev1.Pod {
			pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=ha-web"})
			if err != nil {
				return nil
			}
			return pods.Items
		}
		waitFor(t, 120*time.Second, func() bool {
			ready := 0
			for _, p := range podsOf() {
				if isReady(&p) {
					ready++
				}
			}
			return ready == 2
		})
		before := map[types.UID]string{}
		for _, p := range podsOf() {
			before[p.UID] = p.Spec.NodeName
		}

		// A client-go informer on each survivor, started before the kill:
		// the kill must not make it list everything again (its watch
		// goes on, or resumes from its resourceVersion).
		lists := make([]*atomic.Int32, len(survivors))
		informerStop := make(chan struct{})
		defer close(informerStop)
		for i, s := range survivors {
			lists[i] = &atomic.Int32{}
			ics := s.Clientset()
			lw := &cache.ListWatch{
				ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
					lists[i].Add(1)
					return ics.CoreV1().ConfigMaps("default").List(ctx, o)
				},
				WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
					// client-go lists by a watch with initial events
					// (WatchList) where the server allows it.
					if o.SendInitialEvents != nil && *o.SendInitialEvents {
						lists[i].Add(1)
					}
					return ics.CoreV1().ConfigMaps("default").Watch(ctx, o)
				},
			}
			inf := cache.NewSharedIndexInformer(lw, &corev1.ConfigMap{}, 0, cache.Indexers{})
			go inf.Run(informerStop)
			if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
				t.Fatal("the informer did not sync")
			}
		}

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
					if _, err := wcs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err == nil {
						ackedMu.Lock()
						acked = append(acked, name)
						ackedMu.Unlock()
					} else {
						time.Sleep(50 * time.Millisecond)
					}
				}
			}(w, servers[w%3])
		}
		time.Sleep(2 * time.Second)
		lead.Kill()
		killed := time.Now()
		t.Logf("killed the leader (%s)", lead.Host)

		waitFor(t, 10*time.Second, func() bool {
			d, err := cs.AppsV1().Deployments("default").Get(ctx, "ha-web", metav1.GetOptions{})
			if err != nil {
				return false
			}
			d.Spec.Replicas = ptr.To[int32](4)
			_, err = cs.AppsV1().Deployments("default").Update(ctx, d, metav1.UpdateOptions{})
			return err == nil
		})
		waitFor(t, 15*time.Second-time.Since(killed), func() bool {
			bound := 0
			for _, p := range podsOf() {
				if p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
					bound++
				}
			}
			return bound == 4
		})
		t.Logf("the scaled Deployment's pods were bound %s after the kill", time.Since(killed).Round(100*time.Millisecond))
		time.Sleep(time.Second)
		close(stop)
		wg.Wait()

		// Past the grace period: the nodes stayed Ready all along (their
		// Ready condition did not change since before the kill), and the
		// pods from before are still there, on their nodes.
		if d := 25*time.Second - time.Since(killed); d > 0 {
			time.Sleep(d)
		}
		for _, n := range m.Nodes {
			node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && (c.Status != corev1.ConditionTrue || c.LastTransitionTime.After(killed.Add(-time.Second))) {
					t.Errorf("node %s: Ready %s since %s (the leader was killed at %s)", n.Name, c.Status, c.LastTransitionTime.Format(time.RFC3339), killed.Format(time.RFC3339))
				}
			}
		}
		// The nodes were using the killed server (the first they were
		// given) when it was the leader: their load balancers moved on.
		if lead == servers[0] {
			for _, n := range m.Nodes {
				log, _ := os.ReadFile(filepath.Join(n.DataDir, "node.log"))
				if !bytes.Contains(log, []byte("server load balancer: now using")) && !bytes.Contains(log, []byte("server load balancer: failing over")) {
					t.Errorf("node %s: its server load balancer did not move off %s (see its log)", n.Name, lead.Host)
				}
			}
		}
		now := map[types.UID]corev1.Pod{}
		for _, p := range podsOf() {
			now[p.UID] = p
		}
		for uid, node := range before {
			if p, ok := now[uid]; !ok || p.DeletionTimestamp != nil || p.Spec.NodeName != node {
				t.Errorf("pod %s on %s was evicted or deleted after the kill", uid, node)
			}
		}

		ackedMu.Lock()
		names := append([]string(nil), acked...)
		ackedMu.Unlock()
		if len(names) < 100 {
			t.Fatalf("only %d writes acknowledged: the load did not run", len(names))
		}
		for _, s := range survivors {
			waitFor(t, 10*time.Second, allConfigMaps(t, ctx, s, names))
		}
		t.Logf("%d acknowledged writes, all on both survivors", len(names))
		for i, s := range survivors {
			if n := lists[i].Load(); n != 1 {
				t.Errorf("the informer on %s listed %d times: the kill made it relist", s.Host, n)
			}
		}
		lead.Start()
		waitFor(t, 30*time.Second, allConfigMaps(t, ctx, lead, names))
		t.Logf("the killed server restarted and caught up")
	})

	t.Run("two of three killed", func(t *testing.T) {
		last, gone := servers[0], servers[1:]
		cs := last.Clientset()
		for i := range 5 {
			name := fmt.Sprintf("before-quorum-loss-%d", i)
			if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			acked = append(acked, name)
		}
		for _, s := range gone {
			s.Kill()
		}
		// A write through the last server: etcd has no quorum. It must
		// fail within the request's timeout, with an error, not hang.
		start := time.Now()
		code, body, err := rawCreate(ctx, last, "during-quorum-loss", "8s")
		took := time.Since(start)
		t.Logf("write without quorum: %d %s (%v) after %s", code, strings.TrimSpace(body), err, took.Round(100*time.Millisecond))
		if err == nil && code < 300 {
			t.Fatalf("a write without etcd quorum was acknowledged: %d %s", code, body)
		}
		if took > 15*time.Second {
			t.Fatalf("the write without quorum took %s to fail: past its 8 s timeout", took)
		}
		if err != nil {
			t.Fatalf("the write without quorum got no answer (%v): want an error status from the server", err)
		}

		// One returns: quorum, writes work, nothing acknowledged is lost.
		gone[0].Start()
		waitFor(t, 60*time.Second, func() bool {
			code, _, err := rawCreate(ctx, last, "after-quorum-back", "5s")
			return err == nil && (code == http.StatusCreated || code == http.StatusConflict)
		})
		waitFor(t, 20*time.Second, allConfigMaps(t, ctx, last, acked))
		waitFor(t, 20*time.Second, allConfigMaps(t, ctx, gone[0], acked))
		gone[1].Start()
		waitFor(t, 30*time.Second, allConfigMaps(t, ctx, gone[1], acked))
	})
}

// controllersLeader finds the server that leads the controllers (its
// identity ends in /<pid>).
func controllersLeader(t *testing.T, ctx context.Context, servers []*cluster.Server) *cluster.Server {
	t.Helper()
	cli := etcdClient(t, servers[0])
	var lead *cluster.Server
	waitFor(t, 20*time.Second, func() bool {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		id, err := leader.Leader(lctx, cli, "controllers")
		for _, s := range servers {
			if err == nil && strings.HasSuffix(id, fmt.Sprintf("/%d", s.Pid())) {
				lead = s
			}
		}
		return lead != nil
	})
	return lead
}

// allConfigMaps is true once every name is listed through s.
func allConfigMaps(t *testing.T, ctx context.Context, s *cluster.Server, names []string) func() bool {
	return func() bool {
		list, err := s.Clientset().CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		have := map[string]bool{}
		for _, cm := range list.Items {
			have[cm.Name] = true
		}
		for _, n := range names {
			if !have[n] {
				t.Logf("%s: %s acknowledged but not (yet) listed", s.Host, n)
				return false
			}
		}
		return true
	}
}

// rawCreate POSTs a ConfigMap with the given ?timeout= and no client
// timeout of its own (past a minute): what the server answers, and when.
func rawCreate(ctx context.Context, s *cluster.Server, name, timeout string) (int, string, error) {
	cfg := s.RESTConfig()
	cert, err := tls.X509KeyPair(cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData)
	if err != nil {
		return 0, "", err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cfg.TLSClientConfig.CAData)
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}}}
	body := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q}}`, name)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/api/v1/namespaces/default/configmaps?timeout="+timeout, bytes.NewBufferString(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// checkEtcdClosed (safe to call from several goroutines: it never calls
// t.Fatal): a client that trusts the etcd CA but has no certificate
// is refused on the server's etcd client and peer ports; with the server's
// client certificate, both answer (so the refusals are about the
// certificate).
func checkEtcdClosed(t *testing.T, s *cluster.Server) {
	dir := etcd.PKIDir(s.DataDir)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Error(err)
		return
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	noCert := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	if err != nil {
		t.Error(err)
		return
	}
	withCert := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}

	clientURL := fmt.Sprintf("https://127.0.0.1:%d", s.EtcdClient)
	etcdGet := func(cfg *tls.Config) error {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{clientURL}, TLS: cfg, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = cli.Get(ctx, "/registry/secrets/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err
	}
	if err := etcdGet(noCert); err == nil {
		t.Errorf("etcd client port %s answered a client without a certificate", clientURL)
	}
	if err := etcdGet(withCert); err != nil {
		t.Errorf("etcd client port %s with the server's client certificate: %v", clientURL, err)
	}
	peerURL := fmt.Sprintf("https://127.0.0.1:%d/members", s.EtcdPeer)
	peerGet := func(cfg *tls.Config) error {
		c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get(peerURL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	}
	if err := peerGet(noCert); err == nil {
		t.Errorf("etcd peer port %s answered a client without a certificate", peerURL)
	}
	if err := peerGet(withCert); err != nil {
		t.Errorf("etcd peer port %s with a certificate of the etcd CA: %v", peerURL, err)
	}
	// Plaintext gets nothing either.
	if resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(strings.Replace(peerURL, "https", "http", 1)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("etcd peer port answered plaintext")
		}
	}
}
