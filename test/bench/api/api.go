// Package api is the api suite of petrelctl bench: one petrel server's
// creates, LISTs, watch delivery and memory against raw etcd puts and a
// minimal API server on the same etcd, the cost of audit logging, then the
// same pod load on Petrel and on the real kube-apiserver, each on an etcd
// of its own.
package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/petrel-project/petrel/test/bench"
)

// Options tune the api suite.
type Options struct {
	Petrel      string        // the petrel binary
	Duration    time.Duration // length of each throughput run
	Concurrency int
	Pods        int // objects in the LIST test and the peer comparison
	Watchers    int
	Progress    io.Writer
	// Etcd is the etcd binary the peer comparison starts for each server;
	// empty: no comparison.
	Etcd string
	// KubeAPIServer is the real kube-apiserver the comparison measures
	// Petrel against; empty: Petrel's figures alone, with a note.
	KubeAPIServer string
	// PeerOnly runs only the peer comparison.
	PeerOnly bool
	// ProfileDir, when set, receives the heap profiles of the suite's own
	// server at its end and of both peers after their lists.
	ProfileDir string
}

// Run runs the api suite: Petrel's own figures against raw etcd and a
// minimal server (unless o.PeerOnly), then the comparison with the real
// kube-apiserver on the same load.
func Run(ctx context.Context, o Options) (*bench.Report, error) {
	progress := func(format string, args ...interface{}) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "bench api: "+format+"\n", args...)
		}
	}
	if o.Pods < 1 || o.Concurrency < 1 {
		return nil, fmt.Errorf("--pods and --concurrency must be at least 1")
	}
	rep := bench.NewReport("api")
	if !o.PeerOnly {
		// Its server stops before the comparison's start, so that they do
		// not share the machine.
		if err := runAPIOwn(ctx, o, rep, progress); err != nil {
			return nil, err
		}
		if err := runAuditCost(ctx, o, rep, progress); err != nil {
			return nil, err
		}
	}
	if err := runAPIPeer(ctx, o, rep, progress); err != nil {
		return nil, err
	}
	return rep, nil
}

// runAPIOwn measures one `petrel server` with its embedded etcd.
func runAPIOwn(ctx context.Context, o Options, rep *bench.Report, progress func(string, ...interface{})) error {
	progress("starting petrel server")
	sp, err := bench.StartServer(ctx, o.Petrel)
	if err != nil {
		return err
	}
	defer sp.Stop()
	time.Sleep(3 * time.Second)
	rss, err := bench.RSSMB(sp.Cmd.Process.Pid)
	if err != nil {
		return err
	}
	rep.Add("server_idle_rss", "MB", rss, "lower", bench.Goal(100))
	for _, part := range []struct{ name, field string }{{"server_idle_rss_anonymous", "RssAnon"}, {"server_idle_rss_file", "RssFile"}} {
		mb, err := bench.ProcStatusMB(sp.Cmd.Process.Pid, part.field)
		if err != nil {
			return err
		}
		rep.Add(part.name, "MB", mb, "lower", nil)
	}

	cfg, cs, err := sp.Client()
	if err != nil {
		return err
	}
	// The embedded etcd takes clients with a certificate from its own CA.
	pkiDir := filepath.Join(sp.Dir, "pki", "etcd")
	etcdTLS, err := (transport.TLSInfo{CertFile: filepath.Join(pkiDir, "client.crt"), KeyFile: filepath.Join(pkiDir, "client.key"),
		TrustedCAFile: filepath.Join(pkiDir, "ca.crt")}).ClientConfig()
	if err != nil {
		return fmt.Errorf("etcd client certificate of the server: %w", err)
	}
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{sp.EtcdURL}, TLS: etcdTLS, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer etcd.Close()

	value := strings.Repeat("x", 300) // about the size of a stored small ConfigMap
	progress("raw etcd puts, %d clients, %s", o.Concurrency, o.Duration)
	raw, err := bench.RunFor(o.Concurrency, o.Duration, func(w, i int) error {
		_, err := etcd.Put(ctx, fmt.Sprintf("/bench/raw/%d/%d", w, i), value)
		return err
	})
	if err != nil {
		return fmt.Errorf("raw etcd puts: %w", err)
	}
	createConfigMaps := func(client kubernetes.Interface, prefix string) (float64, error) {
		return bench.RunFor(o.Concurrency, o.Duration, func(w, i int) error {
			_, err := client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c-%s-%d-%d", prefix, w, i)},
				Data: map[string]string{"v": value[:200]}}, metav1.CreateOptions{})
			return err
		})
	}
	// The ceiling: the same creates through a server that does only what
	// any API server on etcd must (minimalAPIServer), on the same etcd.
	progress("minimal API server creates (json), %d clients, %s", o.Concurrency, o.Duration)
	minimal := startMinimalAPIServer(ctx, etcd)
	mcs, err := minimal.client()
	if err != nil {
		minimal.close()
		return err
	}
	ceiling, err := createConfigMaps(mcs, "minimal")
	minimal.close()
	if err != nil {
		return fmt.Errorf("minimal API server creates: %w", err)
	}
	rep.AddRatio(fmt.Sprintf("minimal_api_server_creates_per_second_%d_clients_json", o.Concurrency), "creates/s", ceiling, "raw_etcd_puts", raw, "higher", 0)
	// Creates with JSON clients (kubectl's and most tools' encoding) and with
	// protobuf clients (what controllers and harnesses such as clusterloader2
	// use), each against the same raw etcd baseline.
	pcfg := rest.CopyConfig(cfg)
	pcfg.ContentType = "application/vnd.kubernetes.protobuf"
	pcfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf"
	pcs, err := kubernetes.NewForConfig(pcfg)
	if err != nil {
		return err
	}
	for _, enc := range []struct {
		name string
		cs   kubernetes.Interface
	}{{"json", cs}, {"protobuf", pcs}} {
		progress("API creates (%s), %d clients, %s", enc.name, o.Concurrency, o.Duration)
		creates, err := createConfigMaps(enc.cs, enc.name)
		if err != nil {
			return fmt.Errorf("API creates: %w", err)
		}
		rep.AddRatio(fmt.Sprintf("creates_per_second_%d_clients_%s", o.Concurrency, enc.name), "creates/s", creates, "raw_etcd_puts", raw, "higher", 0.7)
		if enc.name == "json" {
			rep.AddRatio(fmt.Sprintf("creates_per_second_%d_clients_json_vs_minimal_server", o.Concurrency), "creates/s", creates, "minimal_api_server_creates", ceiling, "higher", 0)
		}
	}

	progress("creating %d pods for the LIST test", o.Pods)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench-list"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	err = bench.RunEach(o.Concurrency, o.Pods, func(i int) error {
		_, err := cs.CoreV1().Pods("bench-list").Create(ctx, benchPod(fmt.Sprintf("p-%d", i+1)), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("creating pods: %w", err)
	}
	// The server has no nodes, so its scheduler marks each pod
	// unschedulable (a status write and an event per pod); the LIST figures
	// are of a settled server, and the first LIST after those writes, which
	// encodes every changed pod again, is reported on its own.
	progress("waiting for the scheduler to mark the %d pods", o.Pods)
	if err := bench.WaitPodsScheduledCondition(ctx, cs, "bench-list", o.Pods); err != nil {
		return err
	}
	// The server's figure: a raw JSON GET read to the last byte and thrown
	// away, so that the client's decoding (which on 2 cores takes longer than
	// the server) is measured apart.
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: rt}
	rawListAs := func(accept string) (time.Duration, error) {
		d, _, err := rawGet(ctx, hc, cfg.Host+"/api/v1/namespaces/bench-list/pods", accept)
		return d, err
	}
	rawList := func() (time.Duration, error) { return rawListAs("application/json") }
	first, err := rawList()
	if err != nil {
		return err
	}
	rep.Add(fmt.Sprintf("list_%d_pods_json_first_after_changes", o.Pods), "ms", bench.Millis(first), "lower", nil)
	var rawLat, protoLat, typed []time.Duration
	for i := 0; i < 20; i++ {
		d, err := rawList()
		if err != nil {
			return err
		}
		rawLat = append(rawLat, d)
		// The same list as protobuf, what controllers and clusterloader2 ask
		// for: Kubernetes serves it faster than JSON.
		if d, err = rawListAs("application/vnd.kubernetes.protobuf"); err != nil {
			return err
		}
		protoLat = append(protoLat, d)
		start := time.Now()
		l, err := cs.CoreV1().Pods("bench-list").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		typed = append(typed, time.Since(start))
		if len(l.Items) != o.Pods {
			return fmt.Errorf("LIST returned %d pods, want %d", len(l.Items), o.Pods)
		}
	}
	rep.Add(fmt.Sprintf("list_%d_pods_json_p50", o.Pods), "ms", bench.Millis(bench.Percentile(rawLat, 50)), "lower", nil)
	rep.Add(fmt.Sprintf("list_%d_pods_json_p99", o.Pods), "ms", bench.Millis(bench.Percentile(rawLat, 99)), "lower", bench.Goal(200))
	rep.Add(fmt.Sprintf("list_%d_pods_protobuf_p50", o.Pods), "ms", bench.Millis(bench.Percentile(protoLat, 50)), "lower", nil)
	rep.AddRatio(fmt.Sprintf("list_%d_pods_protobuf_vs_json_p50", o.Pods), "ms", bench.Millis(bench.Percentile(protoLat, 50)),
		fmt.Sprintf("list_%d_pods_json_p50", o.Pods), bench.Millis(bench.Percentile(rawLat, 50)), "lower", 1)
	rep.Add(fmt.Sprintf("list_%d_pods_clientgo_decoded_p50", o.Pods), "ms", bench.Millis(bench.Percentile(typed, 50)), "lower", nil)
	rep.Add(fmt.Sprintf("list_%d_pods_clientgo_decoded_p99", o.Pods), "ms", bench.Millis(bench.Percentile(typed, 99)), "lower", nil)

	progress("watch delivery to %d watchers", o.Watchers)
	p50, p99, err := watchLatency(ctx, cs, o.Watchers, 100)
	if err != nil {
		return err
	}
	rep.Add(fmt.Sprintf("watch_delivery_%d_watchers_p50", o.Watchers), "ms", bench.Millis(p50), "lower", nil)
	rep.Add(fmt.Sprintf("watch_delivery_%d_watchers_p99", o.Watchers), "ms", bench.Millis(p99), "lower", nil)
	if rss, err := bench.RSSMB(sp.Cmd.Process.Pid); err == nil {
		rep.Add(fmt.Sprintf("server_rss_after_%d_pods", o.Pods), "MB", rss, "lower", nil)
	}
	// This server also holds its embedded etcd, the suite's ConfigMaps and
	// the scheduler's events: the parts say what of it is heap.
	for _, part := range []struct{ name, field string }{{"server_rss_anonymous_after_%d_pods", "RssAnon"}, {"server_rss_file_after_%d_pods", "RssFile"}} {
		if mb, err := bench.ProcStatusMB(sp.Cmd.Process.Pid, part.field); err == nil {
			rep.Add(fmt.Sprintf(part.name, o.Pods), "MB", mb, "lower", nil)
		}
	}
	if o.ProfileDir != "" {
		path := filepath.Join(o.ProfileDir, fmt.Sprintf("petrel-embedded-etcd-heap-%d-pods.pb.gz", o.Pods))
		if err := saveHeapProfile(ctx, hc, cfg.Host, path); err != nil {
			return err
		}
		rep.Note(fmt.Sprintf("heap profile of the petrel server with embedded etcd after the suite: %s", path))
	}
	return nil
}

func benchPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "bench", "tier": "list"}},
		Spec: corev1.PodSpec{NodeName: "", Containers: []corev1.Container{{Name: "c", Image: "petrel.local/testserver:1",
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Env: []corev1.EnvVar{{Name: "MODE", Value: "bench"}}}}},
	}
}

// watchLatency opens n watches and measures, for each of count creates, the
// time from the create call to each watcher's event.
func watchLatency(ctx context.Context, cs kubernetes.Interface, n, count int) (time.Duration, time.Duration, error) {
	ns := "bench-watch"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return 0, 0, err
	}
	l, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, 0, err
	}
	var sent sync.Map // name → time.Time
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < n; i++ {
		w, err := cs.CoreV1().ConfigMaps(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: l.ResourceVersion})
		if err != nil {
			return 0, 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Stop()
			got := 0
			for ev := range w.ResultChan() {
				cm, ok := ev.Object.(*corev1.ConfigMap)
				if !ok {
					continue
				}
				if t, ok := sent.Load(cm.Name); ok {
					mu.Lock()
					lat = append(lat, time.Since(t.(time.Time)))
					mu.Unlock()
				}
				got++
				if got == count {
					return
				}
			}
		}()
	}
	for i := 0; i < count; i++ {
		name := fmt.Sprintf("w-%d", i)
		sent.Store(name, time.Now())
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			return 0, 0, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cancel()
		return 0, 0, fmt.Errorf("watchers did not receive all %d events", count)
	}
	return bench.Percentile(lat, 50), bench.Percentile(lat, 99), nil
}
