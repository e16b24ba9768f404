package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/cluster"
	"github.com/petrel-project/petrel/test/images"
)

var metricLine = regexp.MustCompile(`^(\w+)\{([^}]*)\} (\S+)$`)
var labelPair = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// serviceCounters reads one of the node's petrel_service_*_total counters
// for a Service, by backend pod.
func serviceCounters(t *testing.T, u *cluster.Up, metric, ns, name string) map[string]float64 {
	t.Helper()
	return serviceCountersBy(t, u, metric, ns, name, "backend_pod")
}

// serviceCountersBy is serviceCounters summed by another label.
func serviceCountersBy(t *testing.T, u *cluster.Up, metric, ns, name, by string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", u.MetricsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		m := metricLine.FindStringSubmatch(line)
		if m == nil || m[1] != metric {
			continue
		}
		labels := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			labels[p[1]] = p[2]
		}
		if labels["namespace"] != ns || labels["service"] != name {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[labels[by]] += v
	}
	return out
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// TestServiceTrafficCounters: the socket load balancer counts each
// connection to a ClusterIP once, for the backend it chose; the node's
// /metrics, `petrelctl service list --stats` and `petrelctl top services`
// show exactly the connections the test made, by the pod that answered.
func TestServiceTrafficCounters(t *testing.T) {
	u := startPodCluster(t)
	cs := u.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	kubectl(t, u.Server, "", "create", "deployment", "web", "--image="+images.TestServer, "--replicas=2")
	kubectl(t, u.Server, "", "expose", "deployment", "web", "--port=80", "--target-port=8080")
	kubectl(t, u.Server, "", "rollout", "status", "deployment/web", "--timeout=90s")
	svc, err := cs.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	webPods := map[string]bool{}
	for _, p := range pods.Items {
		webPods[p.Name] = true
	}
	// Both endpoints in the maps before counting starts.
	poll(t, "the web frontend with two backends", 30*time.Second, func() error {
		out, err := u.Petrelctl(ctx, "service", "list", "-o", "json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		var rows []struct {
			Name, Frontend string
			Backends       []json.RawMessage
		}
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			return err
		}
		for _, r := range rows {
			if r.Name == "web" && strings.HasPrefix(r.Frontend, svc.Spec.ClusterIP+":") && len(r.Backends) == 2 {
				return nil
			}
		}
		return fmt.Errorf("no web frontend with 2 backends: %s", out)
	})

	before := serviceCounters(t, u, "petrel_service_connections_total", "default", "web")
	const conns = 20
	script := fmt.Sprintf("for i in $(seq %d); do %s wget -qO- http://%s/hostname; echo; done", conns, images.Busybox, svc.Spec.ClusterIP)
	out, err := u.InCgroup(ctx, "/bin/sh", "-c", script)
	if err != nil {
		t.Fatalf("connections through the ClusterIP: %v\n%s", err, out)
	}
	heard := map[string]float64{}
	for _, name := range strings.Fields(out) {
		if !webPods[name] {
			t.Fatalf("answer %q is from no web pod (%v); output:\n%s", name, webPods, out)
		}
		heard[name]++
	}
	if sum(heard) != conns {
		t.Fatalf("%d answers, want %d:\n%s", int(sum(heard)), conns, out)
	}

	after := serviceCounters(t, u, "petrel_service_connections_total", "default", "web")
	if got := sum(after) - sum(before); got != conns {
		t.Fatalf("petrel_service_connections_total of default/web rose by %v, want %d (before %v, after %v)", got, conns, before, after)
	}
	for pod, n := range heard {
		if got := after[pod] - before[pod]; got != n {
			t.Errorf("backend_pod %s: counted %v connections, it answered %v", pod, got, n)
		}
	}
	t.Logf("connections by backend pod: %v", after)
	// The socket hooks counted the packets of those connections both ways.
	packets := sum(serviceCounters(t, u, "petrel_service_packets_total", "default", "web"))
	bytes := sum(serviceCounters(t, u, "petrel_service_bytes_total", "default", "web"))
	if packets < 4*conns || bytes < 40*packets {
		t.Errorf("web: %v packets, %v bytes for %d HTTP requests", packets, bytes, conns)
	}
	t.Logf("web: %v packets, %v bytes", packets, bytes)

	// The same counts from the pinned maps, joined with the API.
	out, err = u.Petrelctl(ctx, "service", "list", "--stats", "-o", "json")
	if err != nil {
		t.Fatalf("petrelctl service list --stats: %v\n%s", err, out)
	}
	var rows []struct {
		Name, Frontend string
		Traffic        *struct{ Connections uint64 }
		Backends       []struct {
			Pod     string
			Traffic *struct{ Connections uint64 }
		}
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	found := false
	for _, r := range rows {
		if r.Name != "web" || !strings.HasPrefix(r.Frontend, svc.Spec.ClusterIP+":") {
			continue
		}
		found = true
		if r.Traffic == nil || r.Traffic.Connections != uint64(sum(after)) {
			t.Errorf("service list --stats: frontend traffic %+v, want %v connections\n%s", r.Traffic, sum(after), out)
		}
		for _, b := range r.Backends {
			if !webPods[b.Pod] || b.Traffic == nil || b.Traffic.Connections != uint64(after[b.Pod]) {
				t.Errorf("service list --stats: backend %+v (traffic %+v), want a web pod with %v connections", b, b.Traffic, after[b.Pod])
			}
		}
	}
	if !found {
		t.Fatalf("service list --stats has no web ClusterIP frontend:\n%s", out)
	}
	table, err := u.Petrelctl(ctx, "service", "list", "--stats")
	if err != nil || !strings.Contains(table, "CONNECTIONS") {
		t.Fatalf("service list --stats table: %v\n%s", err, table)
	}
	t.Logf("petrelctl service list --stats:\n%s", table)

	// top: one refresh after the baseline, while 5 more connections are made.
	done := make(chan string, 1)
	go func() {
		out, err := u.Petrelctl(ctx, "top", "services", "-n", "1", "--interval", "3s", "-o", "json")
		if err != nil {
			out = "error: " + err.Error() + "\n" + out
		}
		done <- out
	}()
	time.Sleep(time.Second)
	if out, err := u.InCgroup(ctx, "/bin/sh", "-c", strings.Replace(script, fmt.Sprint(conns), "5", 1)); err != nil {
		t.Fatalf("more connections: %v\n%s", err, out)
	}
	topOut := <-done
	var top struct {
		Services []struct {
			Namespace, Name      string
			Connections          uint64
			ConnectionsPerSecond float64
		}
	}
	if err := json.Unmarshal([]byte(topOut), &top); err != nil {
		t.Fatalf("petrelctl top services -o json: %v\n%s", err, topOut)
	}
	ok := false
	for _, s := range top.Services {
		if s.Namespace == "default" && s.Name == "web" {
			ok = s.Connections == uint64(sum(after))+5 && s.ConnectionsPerSecond > 0
			if !ok {
				t.Errorf("top services: web %+v, want %v connections and a rate above 0", s, sum(after)+5)
			}
		}
	}
	if !ok {
		t.Errorf("top services shows no right web row:\n%s", topOut)
	}
	// The table a person reads (not a terminal here: no screen clearing).
	table, err = u.Petrelctl(ctx, "top", "services", "-n", "1", "--interval", "500ms")
	if err != nil || !strings.Contains(table, "CONN/S") || !strings.Contains(table, "web") || strings.Contains(table, "\033[") {
		t.Errorf("top services table: %v\n%q", err, table)
	}
	t.Logf("petrelctl top services:\n%s", table)
}
