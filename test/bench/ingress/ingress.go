// Package ingress is the ingress suite of petrelctl bench: HTTP through
// the node's ingress against wrk straight to one pod and against nginx as a
// reverse proxy on the same route.
package ingress

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/test/bench"
	"github.com/petrel-project/petrel/test/images"
)

// Options configure the ingress suite.
type Options struct {
	Petrel string
	// Duration is the length of each wrk run.
	Duration time.Duration
	// Connections and Threads are wrk's -c and -t.
	Connections, Threads int
	// Rounds is how many times each figure is measured (the median is
	// kept); the three paths take turns within a round.
	Rounds int
	// CPUProfile, when set, is where a CPU profile of `petrel up` (the
	// node's ingress with the server beside it) is saved, taken during
	// the first wrk run through the ingress.
	CPUProfile string
	Progress   io.Writer
}

// ingressHost is the Host every request of the suite names.
const ingressHost = "bench.example"

// Run measures HTTP requests/s and p99 latency of small responses
// through Petrel's ingress (`petrel up`, the node's listener on loopback)
// against wrk straight to one backend pod (the limit) and against Debian's
// nginx as a reverse proxy with the same route and upstreams (the data path
// of ingress-nginx: upstream keep-alive, HTTP/1.1 to the pods), in turns,
// in one run.
func Run(ctx context.Context, o Options) (rep *bench.Report, err error) {
	progress := func(format string, args ...interface{}) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "bench ingress: "+format+"\n", args...)
		}
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the ingress suite runs pods: run it as root")
	}
	for _, tool := range []string{"wrk", "nginx"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed (hack/deps.sh --bench installs wrk and nginx-light): %w", tool, err)
		}
	}
	rep = bench.NewReport("ingress")
	name := fmt.Sprintf("bench-ing-%d", os.Getpid())
	ports, err := bench.FreePorts(3)
	if err != nil {
		return nil, err
	}
	ingressAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	nginxAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	u, err := bench.StartUpCluster(ctx, o.Petrel, name, fmt.Sprintf("169.254.24.%d", 1+ports[0]%250), progress,
		"--ingress-http-address", ingressAddr, fmt.Sprintf("--profiling=%v", o.CPUProfile != ""))
	if err != nil {
		return nil, err
	}
	defer u.Stop(progress)
	cs := u.Clientset
	if err := bench.WaitNodes(ctx, cs, 1); err != nil {
		return nil, err
	}
	progress("two backend pods, their Service and an Ingress for %s", ingressHost)
	podIPs, err := ingressBackends(ctx, cs)
	if err != nil {
		return nil, err
	}
	if err := waitRouted(ctx, "http://"+ingressAddr+"/hostname"); err != nil {
		return nil, fmt.Errorf("the ingress did not route %s: %w", ingressHost, err)
	}

	dir, err := os.MkdirTemp("", "petrel-bench-nginx-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	stopNginx, err := startNginx(ctx, dir, nginxAddr, podIPs, o.Threads)
	if err != nil {
		return nil, err
	}
	defer stopNginx()
	if err := waitRouted(ctx, "http://"+nginxAddr+"/hostname"); err != nil {
		return nil, fmt.Errorf("nginx did not answer: %w (see %s/error.log)", err, dir)
	}

	paths := []struct{ name, url string }{
		{"straight to one pod", "http://" + podIPs[0] + ":8080/hostname"},
		{"petrel ingress", "http://" + ingressAddr + "/hostname"},
		{"nginx reverse proxy", "http://" + nginxAddr + "/hostname"},
	}
	rps := map[string][]float64{}
	p99 := map[string][]float64{}
	for r := range max(o.Rounds, 1) {
		for _, p := range paths {
			progress("round %d of %d: wrk -t%d -c%d -d%s to %s", r+1, max(o.Rounds, 1), o.Threads, o.Connections, o.Duration, p.name)
			var profiled chan error
			if o.CPUProfile != "" && r == 0 && p.name == "petrel ingress" {
				profiled = make(chan error, 1)
				go func() {
					profiled <- bench.SaveCPUProfile(ctx, fmt.Sprintf("http://127.0.0.1:%d", u.MetricsPort), max(int(o.Duration.Seconds())-2, 1), o.CPUProfile)
				}()
			}
			res, err := runWrk(ctx, p.url, o.Threads, o.Connections, o.Duration)
			if profiled != nil {
				if perr := <-profiled; perr != nil {
					rep.Note("CPU profile: " + perr.Error())
				} else {
					rep.Note("CPU profile of petrel up during the first run through the ingress: " + o.CPUProfile)
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			progress("  %.0f requests/s, p99 %.2f ms, %d errors", res.rps, res.p99ms, res.errors)
			if res.errors > 0 {
				rep.Note(fmt.Sprintf("%s, round %d: wrk counted %d socket errors or non-2xx answers", p.name, r+1, res.errors))
			}
			rps[p.name] = append(rps[p.name], res.rps)
			p99[p.name] = append(p99[p.name], res.p99ms)
		}
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	own := med(rps["petrel ingress"])
	rep.AddRatio("ingress requests/s (small responses)", "requests/s", own, "straight to one pod", med(rps["straight to one pod"]), "higher", 0.8)
	rep.AddRatio("ingress requests/s (small responses)", "requests/s", own, "nginx reverse proxy", med(rps["nginx reverse proxy"]), "higher", 1.0)
	ownP99 := med(p99["petrel ingress"])
	rep.AddRatio("ingress p99 latency", "ms", ownP99, "straight to one pod", med(p99["straight to one pod"]), "lower", 0)
	rep.AddRatio("ingress p99 latency", "ms", ownP99, "nginx reverse proxy", med(p99["nginx reverse proxy"]), "lower", 0)
	rep.Note(fmt.Sprintf("wrk -t%d -c%d -d%s, %d rounds (medians), one machine: wrk, the proxy and the two backend pods share its %s",
		o.Threads, o.Connections, o.Duration, max(o.Rounds, 1), bench.Machine()))
	return rep, nil
}

// ingressBackends starts the suite's Deployment, Service and Ingress and
// returns the backend pods' addresses once they are ready.
func ingressBackends(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	labels := map[string]string{"app": "bench-web"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "bench-web", Namespace: "default"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "web", Image: images.TestServer}}}}}}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "bench-web", Namespace: "default"}, Spec: corev1.ServiceSpec{Selector: labels,
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	prefix := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: "default"}, Spec: networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{{Host: ingressHost, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "bench-web", Port: networkingv1.ServiceBackendPort{Name: "http"}}}}}}}}}}}
	if _, err := cs.NetworkingV1().Ingresses("default").Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=bench-web"})
		if err != nil {
			return nil, err
		}
		var ips []string
		for i := range pods.Items {
			if bench.PodReady(&pods.Items[i]) && pods.Items[i].Status.PodIP != "" {
				ips = append(ips, pods.Items[i].Status.PodIP)
			}
		}
		if len(ips) == 2 {
			slices.Sort(ips)
			return ips, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("the two backend pods were not ready within 2 minutes")
}

// waitRouted waits for a 200 from url with the suite's Host.
func waitRouted(ctx context.Context, url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	var last error
	for range 150 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Host = ingressHost
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

// nginxConf is the reverse proxy ingress-nginx would program for the
// suite's Ingress: HTTP/1.1 with keep-alive to the upstreams, the client's
// Host and X-Forwarded-For passed on, no access log (Petrel's ingress keeps
// metrics, not logs).
var nginxConf = template.Must(template.New("nginx").Parse(`worker_processes {{.Workers}};
daemon off;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path {{.Dir}}/body;
  proxy_temp_path {{.Dir}}/proxy;
  fastcgi_temp_path {{.Dir}}/fastcgi;
  uwsgi_temp_path {{.Dir}}/uwsgi;
  scgi_temp_path {{.Dir}}/scgi;
  upstream backends {
{{range .Upstreams}}    server {{.}}:8080;
{{end}}    keepalive 320;
  }
  server {
    listen {{.Listen}};
    server_name {{.Host}};
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`))

// startNginx runs Debian's nginx with nginxConf in dir; the returned func
// stops it (by its PID).
func startNginx(ctx context.Context, dir, listen string, upstreams []string, workers int) (func(), error) {
	f, err := os.Create(filepath.Join(dir, "nginx.conf"))
	if err != nil {
		return nil, err
	}
	err = nginxConf.Execute(f, map[string]interface{}{"Dir": dir, "Listen": listen, "Host": ingressHost, "Upstreams": upstreams,
		"Workers": max(workers, 1)})
	f.Close()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting nginx: %w", err)
	}
	return func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // nginx's graceful stop; its workers go with it
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
	}, nil
}

// wrkResult is one wrk run's figures.
type wrkResult struct {
	rps, p99ms float64
	errors     int
}

var (
	wrkRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99    = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)\b`)
	wrkErrors = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)|Non-2xx or 3xx responses: (\d+)`)
)

// runWrk runs wrk against url with the suite's Host and reads its
// summary.
func runWrk(ctx context.Context, url string, threads, conns int, d time.Duration) (wrkResult, error) {
	out, err := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", fmt.Sprintf("%ds", int(d.Seconds())),
		"--latency", "-H", "Host: "+ingressHost, url).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	m = wrkP99.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no 99%% latency in wrk's output (--latency):\n%s", out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "us":
		v /= 1000
	case "s":
		v *= 1000
	}
	r.p99ms = v
	for _, e := range wrkErrors.FindAllStringSubmatch(out, -1) {
		for _, n := range e[1:] {
			if k, err := strconv.Atoi(strings.TrimSpace(n)); err == nil {
				r.errors += k
			}
		}
	}
	return r, nil
}
