// Package ha is the ha suite of petrelctl bench: creates/s on three
// servers (three etcd members) against one, and the time from kill -9 of
// the controllers' leader to the first write through a survivor and to the
// controllers' first action.
package ha

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/etcd"
	"github.com/petrel-project/petrel/controlplane/leader"
	"github.com/petrel-project/petrel/test/bench"
)

// Options tune the ha suite.
type Options struct {
	Petrel      string        // the petrel binary
	Duration    time.Duration // length of each creates/s run
	Concurrency int           // clients of the creates/s runs
	Kills       int           // leader kills measured
	Progress    io.Writer
}

// haServer is one `petrel server` of the suite, restartable on its data
// dir with the same flags.
type haServer struct {
	petrel   string
	dir      string
	port     int
	etcdPort int
	args     []string
	cmd      *exec.Cmd
	exited   chan struct{}
}

func newHAServer(petrel string, extra ...string) (*haServer, error) {
	dir, err := os.MkdirTemp("", "petrel-bench-ha-")
	if err != nil {
		return nil, err
	}
	ports, err := bench.FreePorts(3)
	if err != nil {
		return nil, err
	}
	s := &haServer{petrel: petrel, dir: dir, port: ports[0], etcdPort: ports[1]}
	s.args = append([]string{"server", "--data-dir", dir, "--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(ports[0]),
		"--etcd-client-url", fmt.Sprintf("https://127.0.0.1:%d", ports[1]), "--etcd-peer-url", fmt.Sprintf("https://127.0.0.1:%d", ports[2])}, extra...)
	return s, nil
}

func (s *haServer) url() string { return fmt.Sprintf("https://127.0.0.1:%d", s.port) }

// start starts the process and waits for /readyz.
func (s *haServer) start(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.cmd = exec.Command(s.petrel, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.petrel, err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, ch chan struct{}) { _ = cmd.Wait(); close(ch) }(s.cmd, s.exited)
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a readiness probe
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("petrel server exited during start; see %s", filepath.Join(s.dir, "server.log"))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := hc.Get(s.url() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("petrel server not ready in 90 s; see %s", filepath.Join(s.dir, "server.log"))
}

func (s *haServer) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// stop ends the process (SIGTERM, then SIGKILL) and removes its data dir.
func (s *haServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			s.kill()
		}
	}
	_ = os.RemoveAll(s.dir)
}

func (s *haServer) client(timeout time.Duration) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(s.dir, "admin.kubeconfig"))
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst, cfg.Timeout = 1e6, 1e6, timeout
	return kubernetes.NewForConfig(cfg)
}

// etcdClient reaches the server's embedded member with its client
// certificate.
func (s *haServer) etcdClient() (*clientv3.Client, error) {
	dir := etcd.PKIDir(s.dir)
	info := transport.TLSInfo{CertFile: filepath.Join(dir, "client.crt"), KeyFile: filepath.Join(dir, "client.key"), TrustedCAFile: filepath.Join(dir, "ca.crt")}
	tlsConfig, err := info.ClientConfig()
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{Endpoints: []string{fmt.Sprintf("https://127.0.0.1:%d", s.etcdPort)}, TLS: tlsConfig,
		DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
}

// Run runs the ha suite: ConfigMap creates/s with many clients on a
// cluster of three servers (three etcd members) against one server in the
// same run; then, Kills times, kill -9 of the controllers' leader and the
// time to the first write acknowledged by a survivor and to the
// controllers' first action (a ReplicaSet created after the kill gets its
// pod).
func Run(ctx context.Context, o Options) (*bench.Report, error) {
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", args...)
		}
	}
	if o.Kills < 1 {
		o.Kills = 1
	}
	rep := bench.NewReport("ha")

	progress("ha: one server, %d clients creating ConfigMaps for %s", o.Concurrency, o.Duration)
	one, err := newHAServer(o.Petrel)
	if err != nil {
		return nil, err
	}
	if err := one.start(ctx); err != nil {
		one.stop()
		return nil, err
	}
	single, err := createRate(ctx, []*haServer{one}, o.Concurrency, o.Duration)
	one.stop()
	if err != nil {
		return nil, fmt.Errorf("one member: %w", err)
	}

	progress("ha: three servers joined (three etcd members)")
	var servers []*haServer
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	first, err := newHAServer(o.Petrel)
	if err != nil {
		return nil, err
	}
	servers = append(servers, first)
	if err := first.start(ctx); err != nil {
		return nil, err
	}
	token, err := os.ReadFile(filepath.Join(first.dir, "server-token"))
	if err != nil {
		return nil, fmt.Errorf("the first server's token: %w", err)
	}
	for range 2 {
		s, err := newHAServer(o.Petrel, "--join", first.url(), "--token", strings.TrimSpace(string(token)))
		if err != nil {
			return nil, err
		}
		servers = append(servers, s)
		if err := s.start(ctx); err != nil {
			return nil, err
		}
	}
	progress("ha: three servers, %d clients spread over them for %s", o.Concurrency, o.Duration)
	three, err := createRate(ctx, servers, o.Concurrency, o.Duration)
	if err != nil {
		return nil, fmt.Errorf("three members: %w", err)
	}
	rep.AddRatio("configmap_creates_per_s_3_members", "creates/s", three, "configmap_creates_per_s_1_member", single, "higher", 0.6)

	var writes, takeovers []time.Duration
	for k := range o.Kills {
		w, c, err := killLeader(ctx, servers, k, progress)
		if err != nil {
			return nil, fmt.Errorf("leader kill %d: %w", k+1, err)
		}
		writes, takeovers = append(writes, w), append(takeovers, c)
	}
	slices.Sort(writes)
	slices.Sort(takeovers)
	rep.Add("write_recovery_after_leader_kill_p50", "ms", float64(writes[len(writes)/2].Milliseconds()), "lower", bench.Goal(2000))
	rep.Add("controllers_first_action_after_leader_kill_p50", "ms", float64(takeovers[len(takeovers)/2].Milliseconds()), "lower", bench.Goal(15000))
	rep.Note(fmt.Sprintf("%d kills of the controllers' leader (kill -9); write recovery %v, controllers' first action %v", o.Kills, roundAll(writes), roundAll(takeovers)))
	rep.Note("Each kill takes the etcd raft leadership too (moved to the controllers' leader first): the survivors elect a new etcd leader and a new controllers' leader. " +
		"Write recovery: from the kill to the first ConfigMap create acknowledged by a surviving server (a new attempt on each survivor every 50 ms, each with a 2 s timeout). " +
		"Controllers' first action: from the kill to the pod of a ReplicaSet created through a survivor right after it (no nodes: creating the pod is the ReplicaSet controller's act).")
	return rep, nil
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}

// createRate is ConfigMap creates/s from n clients spread over servers.
func createRate(ctx context.Context, servers []*haServer, n int, d time.Duration) (float64, error) {
	clients := make([]kubernetes.Interface, len(servers))
	for i, s := range servers {
		cs, err := s.client(30 * time.Second)
		if err != nil {
			return 0, err
		}
		clients[i] = cs
	}
	ns := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if _, err := clients[0].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return 0, err
	}
	// Warm the connections first.
	for _, cs := range clients {
		if _, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return 0, err
		}
	}
	return bench.RunFor(n, d, func(w, i int) error {
		_, err := clients[w%len(clients)].CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c-%d-%d", w, i)},
			Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
		return err
	})
}

// killLeader kills the controllers' leader, measures the write recovery
// and the controllers' first action through the survivors, then restarts
// it and waits until it is back.
func killLeader(ctx context.Context, servers []*haServer, round int, progress func(string, ...any)) (write, takeover time.Duration, err error) {
	cli, err := servers[0].etcdClient()
	if err != nil {
		return 0, 0, err
	}
	var lead *haServer
	deadline := time.Now().Add(30 * time.Second)
	for lead == nil && time.Now().Before(deadline) {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		id, err := leader.Leader(lctx, cli, "controllers")
		cancel()
		for _, s := range servers {
			if err == nil && s.cmd != nil && strings.HasSuffix(id, fmt.Sprintf(":%d/%d", s.port, s.cmd.Process.Pid)) {
				lead = s
			}
		}
		if lead == nil {
			time.Sleep(200 * time.Millisecond)
		}
	}
	_ = cli.Close()
	if lead == nil {
		return 0, 0, errors.New("no controllers' leader among the servers in 30 s")
	}
	// The worst case: the killed server leads etcd's raft as well, so that
	// the survivors elect a new etcd leader too.
	if err := moveEtcdLeader(ctx, servers, lead); err != nil {
		return 0, 0, err
	}
	var survivors []kubernetes.Interface
	for _, s := range servers {
		if s != lead {
			cs, err := s.client(2 * time.Second)
			if err != nil {
				return 0, 0, err
			}
			survivors = append(survivors, cs)
		}
	}
	ns := fmt.Sprintf("kill-%d-%d", round, time.Now().UnixNano())
	if _, err := survivors[0].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return 0, 0, err
	}
	lead.kill()
	killed := time.Now()

	// The first write acknowledged by a survivor.
	type result struct{ at time.Time }
	acked := make(chan result, 1)
	firstAck := make(chan struct{})
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// A write in flight while etcd has no leader may wait out its timeout
	// even once there is one again (its proposal was dropped): a new
	// attempt starts every 50 ms on each survivor, whatever became of the
	// earlier ones, so that the first success is seen when it can be.
	for i, cs := range survivors {
		go func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for j := 0; ; j++ {
				go func() {
					_, err := cs.CoreV1().ConfigMaps(ns).Create(wctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("w-%d-%d", i, j)}}, metav1.CreateOptions{})
					if err == nil {
						select {
						case acked <- result{time.Now()}:
						default:
						}
					}
				}()
				select {
				case <-wctx.Done():
					return
				case <-firstAck:
					return
				case <-tick.C:
				}
			}
		}()
	}
	// The controllers' first action: a ReplicaSet created now gets its pod.
	labels := map[string]string{"app": "takeover"}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "takeover"}, Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "petrel.local/none"}}}}}}
	for wctx.Err() == nil {
		if _, err := survivors[0].AppsV1().ReplicaSets(ns).Create(wctx, rs, metav1.CreateOptions{}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for wctx.Err() == nil {
		pods, err := survivors[0].CoreV1().Pods(ns).List(wctx, metav1.ListOptions{LabelSelector: "app=takeover"})
		if err == nil && len(pods.Items) > 0 {
			takeover = time.Since(killed)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case r := <-acked:
		write = r.at.Sub(killed)
		close(firstAck)
	case <-wctx.Done():
		return 0, 0, errors.New("no survivor acknowledged a write within a minute of the kill")
	}
	if takeover == 0 {
		return 0, 0, errors.New("the controllers did not act within a minute of the kill")
	}
	progress("ha: kill %d: first write after %s, controllers' first action after %s; restarting the killed server",
		round+1, write.Round(10*time.Millisecond), takeover.Round(10*time.Millisecond))
	if err := lead.start(ctx); err != nil {
		return 0, 0, fmt.Errorf("restarting the killed server: %w", err)
	}
	// Let its member catch up and the cluster settle before the next kill.
	time.Sleep(3 * time.Second)
	return write, takeover, nil
}

// moveEtcdLeader makes to's member the etcd raft leader (MoveLeader, sent
// to the current leader).
func moveEtcdLeader(ctx context.Context, servers []*haServer, to *haServer) error {
	ids := map[*haServer]uint64{}
	var leaderID uint64
	clients := map[*haServer]*clientv3.Client{}
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	for _, s := range servers {
		c, err := s.etcdClient()
		if err != nil {
			return err
		}
		clients[s] = c
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := c.Status(sctx, c.Endpoints()[0])
		cancel()
		if err != nil {
			return fmt.Errorf("etcd status of %s: %w", s.url(), err)
		}
		ids[s], leaderID = st.Header.MemberId, st.Leader
	}
	if ids[to] == leaderID {
		return nil
	}
	for s, id := range ids {
		if id == leaderID {
			mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := clients[s].MoveLeader(mctx, ids[to]); err != nil {
				return fmt.Errorf("etcd move leader to %x: %w", ids[to], err)
			}
			return nil
		}
	}
	return fmt.Errorf("etcd leader %x is none of the servers' members", leaderID)
}
