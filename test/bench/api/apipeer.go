package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/controlplane/pki"
	"github.com/petrel-project/petrel/controlplane/tokens"
	"github.com/petrel-project/petrel/test/bench"
)

// The peer comparison: `petrel server` and the real kube-apiserver, each
// on a fresh external etcd of its own (so that etcd is outside both and the
// memory figures are of the API servers alone), take the same load one
// after the other: N pods created, then LISTed as JSON and as protobuf.

const (
	peerNamespace = "bench-peer"
	// peerSchedulerName names no scheduler, so that Petrel's built-in one
	// leaves the pods alone (kube-apiserver runs none): without it Petrel
	// would also write a status and an event per pod, work kube-apiserver
	// is not asked to do.
	peerSchedulerName = "petrel-bench-no-scheduler"
	// peerLists is how many times each LIST is timed; the median is reported.
	peerLists = 10
)

// peerResult is what one API server did with the peer load.
type peerResult struct {
	createPerS, createCPU       float64       // pods created per second; the server's CPU-seconds meanwhile
	jsonP50, protoP50           time.Duration // consistent lists (no resourceVersion)
	jsonCacheP50, protoCacheP50 time.Duration // resourceVersion=0: from the watch cache on both
	jsonBytes, protoBytes       int64
	// etcdLists counts the pod LISTs the server sent to etcd while the
	// consistent lists ran, from kube-apiserver's etcd_request metric; -1
	// when the server has no such metric.
	etcdLists               int
	rssMB, rssAnonMB        float64 // after the lists
	heapProfile, serverName string
}

// apiUnderTest is one running API server of the comparison.
type apiUnderTest struct {
	name string
	pid  int
	cfg  *rest.Config
}

// runAPIPeer runs the peer comparison and adds its rows to rep; what cannot
// run on this machine (no etcd, no kube-apiserver) is skipped with a note.
func runAPIPeer(ctx context.Context, o Options, rep *bench.Report, progress func(string, ...interface{})) error {
	if o.Etcd == "" {
		rep.Note("peer comparison not run: no etcd binary (--etcd, or /usr/bin/etcd from Debian's etcd-server package); both servers need an external etcd")
		return nil
	}
	progress("peer: petrel server on a fresh etcd, %d pods", o.Pods)
	ours, err := runPeerSide(ctx, o, "petrel", startPetrelOnEtcd, progress)
	if err != nil {
		return fmt.Errorf("peer comparison, petrel server: %w", err)
	}
	var base *peerResult
	if o.KubeAPIServer == "" {
		rep.Note("kube-apiserver not found (--kube-apiserver, or $CONFORMANCE_DIR/bin/kube-apiserver from ../shared/conformance/build.sh peers): " +
			"the peer_* rows are Petrel's alone, without the kube_apiserver baseline")
	} else {
		progress("peer: %s on a fresh etcd, the same %d pods", o.KubeAPIServer, o.Pods)
		kas, err := runPeerSide(ctx, o, "kube-apiserver", startKubeAPIServer, progress)
		if err != nil {
			return fmt.Errorf("peer comparison, kube-apiserver: %w", err)
		}
		base = &kas
	}
	name := func(format string) string { return fmt.Sprintf(format, o.Pods) }
	row := func(n, unit string, ours, theirs float64, better string, goal float64) {
		if base == nil {
			rep.Add(n, unit, ours, better, nil)
			return
		}
		rep.AddRatio(n, unit, ours, "kube_apiserver", theirs, better, goal)
	}
	var b peerResult
	if base != nil {
		b = *base
	}
	row(name("peer_server_rss_after_%d_pods"), "MB", ours.rssMB, b.rssMB, "lower", 1)
	row(name("peer_server_rss_anonymous_after_%d_pods"), "MB", ours.rssAnonMB, b.rssAnonMB, "lower", 0)
	row(name("peer_pod_list_%d_protobuf_p50"), "ms", bench.Millis(ours.protoP50), bench.Millis(b.protoP50), "lower", 1)
	row(name("peer_pod_list_%d_json_p50"), "ms", bench.Millis(ours.jsonP50), bench.Millis(b.jsonP50), "lower", 1)
	row(name("peer_pod_list_%d_protobuf_rv0_p50"), "ms", bench.Millis(ours.protoCacheP50), bench.Millis(b.protoCacheP50), "lower", 1)
	row(name("peer_pod_list_%d_json_rv0_p50"), "ms", bench.Millis(ours.jsonCacheP50), bench.Millis(b.jsonCacheP50), "lower", 1)
	row(name("peer_create_%d_pods_per_s"), "pods/s", ours.createPerS, b.createPerS, "higher", 1)
	row(name("peer_create_%d_pods_cpu_seconds"), "CPU-s", ours.createCPU, b.createCPU, "lower", 1)
	// The bytes say whether both answered the same pods: defaults that one
	// server adds and the other not make the lists differ in size.
	row(name("peer_pod_list_%d_json_bytes"), "MB", float64(ours.jsonBytes)/(1<<20), float64(b.jsonBytes)/(1<<20), "lower", 0)
	row(name("peer_pod_list_%d_protobuf_bytes"), "MB", float64(ours.protoBytes)/(1<<20), float64(b.protoBytes)/(1<<20), "lower", 0)
	// Each server's protobuf list against its own JSON list: the issue's
	// claim is that kube-apiserver's protobuf is the faster of its two.
	rep.AddRatio(name("peer_pod_list_%d_protobuf_vs_json_p50_petrel"), "ms", bench.Millis(ours.protoP50), "petrel_json", bench.Millis(ours.jsonP50), "lower", 1)
	if base != nil {
		rep.AddRatio(name("peer_pod_list_%d_protobuf_vs_json_p50_kube_apiserver"), "ms", bench.Millis(b.protoP50), "kube_apiserver_json", bench.Millis(b.jsonP50), "lower", 0)
	}
	if base != nil && base.etcdLists > 0 {
		rep.Note(fmt.Sprintf("kube-apiserver sent %d of its %d consistent pod LISTs (no resourceVersion) to etcd rather than its watch cache: "+
			"it serves them from the cache only when etcd supports progress notifications (3.4.31+, 3.5.13+; --etcd %s); the *_rv0_* rows are from the cache on both",
			base.etcdLists, 2*peerLists, o.Etcd))
	}
	for _, r := range []*peerResult{&ours, base} {
		if r != nil && r.heapProfile != "" {
			rep.Note(fmt.Sprintf("heap profile of %s after the lists: %s", r.serverName, r.heapProfile))
		}
	}
	return nil
}

// startAPI starts one API server on the etcd at etcdURL in dir and returns
// it with a function that stops it.
type startAPI func(ctx context.Context, o Options, etcdURL, dir string) (*apiUnderTest, func(), error)

// runPeerSide starts a fresh etcd and an API server on it, runs the load
// and removes both.
func runPeerSide(ctx context.Context, o Options, side string, start startAPI, progress func(string, ...interface{})) (res peerResult, err error) {
	dir, err := os.MkdirTemp("", "petrel-bench-peer-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	etcd, err := startEtcd(ctx, o.Etcd, filepath.Join(dir, "etcd"))
	if err != nil {
		return res, err
	}
	defer etcd.stop()
	api, stop, err := start(ctx, o, etcd.url, dir)
	if err != nil {
		return res, err
	}
	defer stop()
	res, err = measurePeer(ctx, o, api, progress)
	res.serverName = side
	return res, err
}

// measurePeer runs the peer load against one API server.
func measurePeer(ctx context.Context, o Options, api *apiUnderTest, progress func(string, ...interface{})) (peerResult, error) {
	var res peerResult
	cfg := rest.CopyConfig(api.cfg)
	cfg.QPS, cfg.Burst = 1e6, 1e6
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return res, err
	}
	// Both servers create their built-in objects (namespaces, RBAC policy,
	// priority classes...) at start: that is not the load's work.
	bench.WaitQuiet(ctx, api.pid, progress)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: peerNamespace}}, metav1.CreateOptions{}); err != nil {
		return res, fmt.Errorf("creating namespace %s: %w", peerNamespace, err)
	}
	// kube-apiserver's ServiceAccount admission refuses pods whose service
	// account does not exist, and without a controller manager nobody makes
	// "default"; Petrel's controller may have made it already.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := cs.CoreV1().ServiceAccounts(peerNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return res, fmt.Errorf("creating service account %s/default: %w", peerNamespace, err)
	}
	cpu0, err := bench.ProcCPUTicks(api.pid)
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := bench.RunEach(o.Concurrency, o.Pods, func(i int) error {
		_, err := cs.CoreV1().Pods(peerNamespace).Create(ctx, peerPod(fmt.Sprintf("p-%d", i+1)), metav1.CreateOptions{})
		return err
	}); err != nil {
		return res, fmt.Errorf("creating pods: %w", err)
	}
	elapsed := time.Since(start)
	cpu1, err := bench.ProcCPUTicks(api.pid)
	if err != nil {
		return res, err
	}
	res.createPerS = float64(o.Pods) / elapsed.Seconds()
	res.createCPU = float64(cpu1-cpu0) / 100 // clock ticks of 10 ms
	progress("created %d pods in %.1f s (%.0f/s), %.1f CPU-s", o.Pods, elapsed.Seconds(), res.createPerS, res.createCPU)
	bench.WaitQuiet(ctx, api.pid, progress)

	// One decoded list checks that every pod is there (and is the first
	// list after the creates, which a server may answer slower); then the
	// server's figures: raw GETs read to the last byte and thrown away.
	l, err := cs.CoreV1().Pods(peerNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return res, fmt.Errorf("listing pods: %w", err)
	}
	if len(l.Items) != o.Pods {
		return res, fmt.Errorf("LIST returned %d pods, want %d", len(l.Items), o.Pods)
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return res, err
	}
	hc := &http.Client{Transport: rt}
	url := cfg.Host + "/api/v1/namespaces/" + peerNamespace + "/pods"
	etcd0 := etcdPodLists(ctx, hc, cfg.Host)
	var jsonLat, protoLat, jsonCache, protoCache []time.Duration
	for i := 0; i < peerLists; i++ {
		d, n, err := rawGet(ctx, hc, url, "application/json")
		if err != nil {
			return res, err
		}
		jsonLat, res.jsonBytes = append(jsonLat, d), n
		if d, n, err = rawGet(ctx, hc, url, "application/vnd.kubernetes.protobuf"); err != nil {
			return res, err
		}
		protoLat, res.protoBytes = append(protoLat, d), n
	}
	res.etcdLists = -1
	if etcd1 := etcdPodLists(ctx, hc, cfg.Host); etcd0 >= 0 && etcd1 >= 0 {
		res.etcdLists = etcd1 - etcd0
	}
	// resourceVersion=0, what every informer asks first: both servers
	// answer it from their watch cache whatever etcd can do.
	for i := 0; i < peerLists; i++ {
		d, _, err := rawGet(ctx, hc, url+"?resourceVersion=0", "application/json")
		if err != nil {
			return res, err
		}
		jsonCache = append(jsonCache, d)
		if d, _, err = rawGet(ctx, hc, url+"?resourceVersion=0", "application/vnd.kubernetes.protobuf"); err != nil {
			return res, err
		}
		protoCache = append(protoCache, d)
	}
	res.jsonP50, res.protoP50 = bench.Percentile(jsonLat, 50), bench.Percentile(protoLat, 50)
	res.jsonCacheP50, res.protoCacheP50 = bench.Percentile(jsonCache, 50), bench.Percentile(protoCache, 50)
	if res.rssMB, err = bench.RSSMB(api.pid); err != nil {
		return res, err
	}
	if res.rssAnonMB, err = bench.ProcStatusMB(api.pid, "RssAnon"); err != nil {
		return res, err
	}
	progress("LIST p50 json %.0f ms (%.1f MB), protobuf %.0f ms (%.1f MB); at resourceVersion=0 json %.0f ms, protobuf %.0f ms; RSS %.0f MB (anonymous %.0f MB)",
		bench.Millis(res.jsonP50), float64(res.jsonBytes)/(1<<20), bench.Millis(res.protoP50), float64(res.protoBytes)/(1<<20),
		bench.Millis(res.jsonCacheP50), bench.Millis(res.protoCacheP50), res.rssMB, res.rssAnonMB)
	if o.ProfileDir != "" {
		// After the RSS, so that fetching it does not move the figure.
		path := filepath.Join(o.ProfileDir, fmt.Sprintf("%s-heap-%d-pods.pb.gz", api.name, o.Pods))
		if err := saveHeapProfile(ctx, hc, cfg.Host, path); err != nil {
			return res, err
		}
		res.heapProfile = path
	}
	return res, nil
}

// rawGet GETs url with the given Accept, reads the answer to the last byte
// and returns how long that took and its size.
func rawGet(ctx context.Context, hc *http.Client, url, accept string) (time.Duration, int64, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("reading GET %s (%s): %w", url, accept, err)
	}
	if resp.StatusCode != 200 || n == 0 {
		return 0, 0, fmt.Errorf("GET %s (%s) answered %d", url, accept, resp.StatusCode)
	}
	return time.Since(start), n, nil
}

// etcdPodLists reads kube-apiserver's count of pod LISTs sent to etcd from
// its /metrics; -1 when it cannot (Petrel has no such metric).
func etcdPodLists(ctx context.Context, hc *http.Client, host string) int {
	req, err := http.NewRequestWithContext(ctx, "GET", host+"/metrics", nil)
	if err != nil {
		return -1
	}
	resp, err := hc.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), `etcd_request_duration_seconds_count{operation="list",type="pods"} `); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(rest)); err == nil {
				return n
			}
		}
	}
	return -1
}

// saveHeapProfile writes the server's /debug/pprof/heap (both servers serve
// it to system:masters) to path. It asks for a collection first (gc=1): a
// profile shows the heap as of the last one, and lists served from cached
// encodings make too little garbage to start one, so what the first list
// cached would be missing.
func saveHeapProfile(ctx context.Context, hc *http.Client, host, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", host+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("heap profile: %s answered %d", req.URL, resp.StatusCode)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}

// peerPod is the LIST test's pod (benchPod) as the peer load creates it on
// both servers: for no scheduler, and without a service account token,
// which kube-apiserver alone (no token controller, no kubelet) would only
// describe as a projected volume and Petrel might describe otherwise.
func peerPod(name string) *corev1.Pod {
	p := benchPod(name)
	p.Spec.SchedulerName = peerSchedulerName
	no := false
	p.Spec.AutomountServiceAccountToken = &no
	return p
}

// startPetrelOnEtcd starts `petrel server` with the external etcd.
func startPetrelOnEtcd(ctx context.Context, o Options, etcdURL, _ string) (*apiUnderTest, func(), error) {
	sp, err := bench.StartServer(ctx, o.Petrel, "--etcd-endpoints", etcdURL)
	if err != nil {
		return nil, nil, err
	}
	cfg, _, err := sp.Client()
	if err != nil {
		sp.Stop()
		return nil, nil, err
	}
	return &apiUnderTest{name: "petrel", pid: sp.Cmd.Process.Pid, cfg: cfg}, sp.Stop, nil
}

// startKubeAPIServer starts the real kube-apiserver on the external etcd,
// with a CA, serving certificate and service account key made here, RBAC,
// and an admin client in system:masters as Petrel's admin kubeconfig has.
func startKubeAPIServer(ctx context.Context, o Options, etcdURL, dir string) (_ *apiUnderTest, _ func(), err error) {
	pkiDir := filepath.Join(dir, "kube-apiserver-pki")
	ca, err := pki.LoadOrCreateCA(pkiDir)
	if err != nil {
		return nil, nil, fmt.Errorf("kube-apiserver CA: %w", err)
	}
	certPath, keyPath, err := ca.EnsurePair(pkiDir, "apiserver", "kube-apiserver", nil, []string{"localhost", "127.0.0.1"}, false)
	if err != nil {
		return nil, nil, fmt.Errorf("kube-apiserver serving certificate: %w", err)
	}
	// An ECDSA key, which kube-apiserver takes both to sign tokens and, as
	// a private key, to verify them.
	if _, err := tokens.LoadOrCreate(pkiDir); err != nil {
		return nil, nil, fmt.Errorf("service account key: %w", err)
	}
	saKey := filepath.Join(pkiDir, "sa.key")
	ports, err := bench.FreePorts(1)
	if err != nil {
		return nil, nil, err
	}
	host := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	kubeconfig := filepath.Join(dir, "kube-apiserver-admin.kubeconfig")
	if err := ca.WriteKubeconfig(kubeconfig, host, "admin", []string{"system:masters"}); err != nil {
		return nil, nil, fmt.Errorf("kube-apiserver admin kubeconfig: %w", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	if err := bench.DropPageCache(o.KubeAPIServer); err != nil {
		return nil, nil, fmt.Errorf("the kube-apiserver binary: %w", err)
	}
	cmd := exec.CommandContext(ctx, o.KubeAPIServer,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(ports[0]),
		"--cert-dir", pkiDir, "--tls-cert-file", certPath, "--tls-private-key-file", keyPath,
		"--client-ca-file", filepath.Join(pkiDir, "ca.crt"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", saKey, "--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--authorization-mode", "RBAC",
		"--profiling=true")
	logPath := filepath.Join(dir, "kube-apiserver.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close() // the child holds its own copy
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", o.KubeAPIServer, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() { stopProcess(cmd, exited) }
	defer func() {
		if err != nil {
			stop()
			err = fmt.Errorf("%w (log kept at %s)", err, bench.KeepLog(logPath))
		}
	}()
	probe := rest.CopyConfig(cfg)
	probe.Timeout = 5 * time.Second
	pcs, err := kubernetes.NewForConfig(probe)
	if err != nil {
		return nil, nil, err
	}
	rc := pcs.Discovery().RESTClient()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var code int
		res := rc.Get().AbsPath("/readyz").Do(ctx).StatusCode(&code)
		if res.Error() == nil && code == 200 {
			return &apiUnderTest{name: "kube-apiserver", pid: cmd.Process.Pid, cfg: cfg}, stop, nil
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("kube-apiserver not ready after 2 minutes: %v", res.Error())
		}
		select {
		case <-exited:
			return nil, nil, errors.New("kube-apiserver exited during start")
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stopProcess stops a child with SIGTERM, or SIGKILL after 10 s.
func stopProcess(cmd *exec.Cmd, exited <-chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// etcdProc is an etcd of the bench's own: fresh data directory, free
// loopback ports.
type etcdProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	url    string
}

// startEtcd starts the etcd binary on dataDir and waits until it answers.
func startEtcd(ctx context.Context, binary, dataDir string) (_ *etcdProc, err error) {
	ports, err := bench.FreePorts(2)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	e := &etcdProc{url: client, exited: make(chan struct{})}
	e.cmd = exec.CommandContext(ctx, binary, "--name", "bench", "--data-dir", dataDir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "bench="+peer,
		"--log-level", "warn")
	logPath := filepath.Join(filepath.Dir(dataDir), "etcd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	go func() { _ = e.cmd.Wait(); close(e.exited) }()
	defer func() {
		if err != nil {
			e.stop()
			err = fmt.Errorf("%w (log kept at %s)", err, bench.KeepLog(logPath))
		}
	}()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Get(cctx, "health")
		cancel()
		if err == nil {
			return e, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("etcd at %s did not answer in 30 s: %w", client, err)
		}
		select {
		case <-e.exited:
			return nil, errors.New("etcd exited during start")
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (e *etcdProc) stop() { stopProcess(e.cmd, e.exited) }
