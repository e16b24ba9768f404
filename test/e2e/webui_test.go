package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/petrel-project/petrel/test/images"
)

const chromium = "/usr/bin/chromium"

// artifactDir is where a test leaves files for people to look at:
// $PETREL_ARTIFACTS/<test>, else <tmp>/petrel-artifacts/<test> (one per
// test name, overwritten by the next run, so runs do not pile up).
func artifactDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("PETREL_ARTIFACTS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "petrel-artifacts")
	}
	dir := filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// uiGet fetches /ui/ over TLS checked against the cluster CA, with the
// given client certificate and bearer token (both optional).
func uiGet(t *testing.T, cfg *rest.Config, cert *tls.Certificate, token string) (int, string) {
	t.Helper()
	pool := x509.NewCertPool()
	ca := cfg.TLSClientConfig.CAData
	if len(ca) == 0 {
		var err error
		if ca, err = os.ReadFile(cfg.TLSClientConfig.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	pool.AppendCertsFromPEM(ca)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	req, _ := http.NewRequest(http.MethodGet, cfg.Host+"/ui/", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWebView: /ui/ is refused (401) without credentials and served with
// the admin certificate; in headless Chromium, as a service account allowed
// to view, the page lists a Deployment's pods, then shows a new pod and the
// BPF traffic of a Service without a reload; a screenshot is kept.
func TestWebView(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("%s is not installed (make deps installs it)", chromium)
	}
	u := startPodCluster(t)
	cs := u.Clientset()
	cfg := u.RESTConfig()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Anonymous: 401, and nothing of the page.
	code, body := uiGet(t, cfg, nil, "")
	if code != http.StatusUnauthorized || strings.Contains(body, "<html") {
		t.Fatalf("anonymous GET /ui/: %d %s, want 401", code, body)
	}
	// A bearer token that is no token: 401 too.
	if code, body := uiGet(t, cfg, nil, "not-a-token"); code != http.StatusUnauthorized {
		t.Fatalf("GET /ui/ with a bad token: %d %s, want 401", code, body)
	}
	// The admin client certificate: the page.
	admin, err := tls.X509KeyPair(cfg.TLSClientConfig.CertData, cfg.TLSClientConfig.KeyData)
	if err != nil {
		t.Fatalf("admin certificate from the kubeconfig: %v", err)
	}
	if code, body := uiGet(t, cfg, &admin, ""); code != http.StatusOK || !strings.Contains(body, "/ui/app.js") {
		t.Fatalf("admin GET /ui/: %d %s", code, body)
	}

	// A viewer: a service account with read access, the UI's paths and
	// nodes/proxy (for the BPF traffic on the nodes' /metrics).
	_, err = cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "viewer"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	read := []string{"get", "list", "watch"}
	_, err = cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "ui-viewer"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes", "pods", "services", "events"}, Verbs: read},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "daemonsets"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"nodes/proxy"}, Verbs: []string{"get"}},
		{NonResourceURLs: []string{"/ui", "/ui/*"}, Verbs: []string{"get"}},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "ui-viewer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "ui-viewer"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "viewer", Namespace: "default"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "viewer", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := tr.Status.Token
	// A service account not granted the UI: 403. (One of the test's own:
	// "default" may not exist yet this early.)
	_, err = cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := uiGet(t, cfg, nil, other.Status.Token); code != http.StatusForbidden {
		t.Fatalf("GET /ui/ as a service account without the UI's paths: %d %s, want 403", code, body)
	}

	kubectl(t, u.Server, "", "create", "deployment", "web", "--image="+images.TestServer, "--replicas=2")
	kubectl(t, u.Server, "", "expose", "deployment", "web", "--port=80", "--target-port=8080")
	kubectl(t, u.Server, "", "rollout", "status", "deployment/web", "--timeout=90s")
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		// Root runs the tests; Chromium's sandbox refuses root.
		chromedp.NoSandbox,
		// The server's certificate is from the cluster's own CA.
		chromedp.IgnoreCertErrors,
		chromedp.WindowSize(1400, 1600),
		chromedp.UserDataDir(t.TempDir()))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()
	start := time.Now()
	if err := chromedp.Do(bctx,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			// Every request of the page, its script's API calls included,
			// carries the viewer's token, as a browser holding it would.
			_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders,
				network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": "Bearer " + token}})
			return err
		}),
		chromedp.Navigate(cfg.Host+"/ui/"),
	); err != nil {
		t.Fatalf("open /ui/ in Chromium: %v", err)
	}
	text := func(sel string) string {
		s, err := chromedp.Run(bctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	waitText := func(what, sel string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			s := text(sel)
			missing := ""
			for _, w := range want {
				if !strings.Contains(s, w) {
					missing = w
					break
				}
			}
			if missing == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %q not on the page after 60s; %s reads:\n%s", what, missing, sel, s)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	waitText("the Deployment's pods", "#pods tbody", names...)
	waitText("the Deployment", "#workloads tbody", "Deployment", "web", "2/2")
	waitText("the node", "#nodes tbody", u.NodeName, "Ready")
	waitText("DNS names", "#dns tbody", "web.default.svc.cluster.local")
	t.Logf("the page listed the Deployment's pods %.1fs after it was opened", time.Since(start).Seconds())

	// A mark on the page that a reload would wipe.
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[string](`window.__petrelMark = "kept"`)); err != nil {
		t.Fatal(err)
	}
	_, err = cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "newcomer"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: images.TestServer}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	waitText("the new pod", "#pods tbody", "newcomer")
	t.Logf("the new pod appeared %.2fs after it was created", time.Since(created).Seconds())

	// Traffic: connections through the ClusterIP show up as the BPF
	// backends' counts, read from the node through nodes/proxy.
	svc, err := cs.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := u.InCgroup(ctx, "/bin/sh", "-c", fmt.Sprintf("for i in 1 2 3 4 5 6; do %s wget -qO- http://%s/hostname; done", images.Busybox, svc.Spec.ClusterIP)); err != nil {
		t.Fatalf("connections to web: %v\n%s", err, out)
	}
	waitText("the BPF traffic of web", "#services tbody", svc.Spec.ClusterIP+":80/TCP → ")
	waitText("the traffic plot", "#plot-traffic", "default/web")
	waitText("the pods-per-node plot", "#plot-pods", u.NodeName)
	mark, err := chromedp.Run(bctx, chromedp.Evaluate[string](`window.__petrelMark || ""`))
	if err != nil {
		t.Fatal(err)
	}
	if mark != "kept" {
		t.Fatalf("the page was reloaded (mark %q)", mark)
	}
	if note := text("#traffic-note"); note != "" {
		t.Errorf("traffic note: %s", note)
	}

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(artifactDir(t), "webui.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the web view: %s (%d bytes)", path, len(shot))
}
