package e2e

import (
	"bufio"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestStandaloneDNS runs `petrel dns` against a real API server: Services
// created with kubectl resolve through it with dig.
func TestStandaloneDNS(t *testing.T) {
	requireKubectl(t)
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig (dnsutils) is not installed; make test installs it")
	}
	s := cluster.StartServer(t)
	kubectl(t, s, "", "create", "service", "clusterip", "web", "--tcp=80:8080")
	kubectl(t, s, "", "create", "service", "externalname", "docs", "--external-name=docs.example.com")

	port := cluster.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(cluster.Binary(t), "dns", "--kubeconfig", s.Kubeconfig, "--listen", addr, "--dns-upstream", "127.0.0.1:1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "serving") {
				ready <- sc.Text()
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("petrel dns did not start")
	}

	ip := kubectl(t, s, "", "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
	digShort := func(args ...string) string {
		all := append([]string{"@127.0.0.1", "-p", fmt.Sprint(port), "+time=2", "+tries=1", "+short"}, args...)
		out, err := exec.Command(dig, all...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := digShort("web.default.svc.cluster.local"); got != ip {
		t.Fatalf("web A = %q, want %s", got, ip)
	}
	if got := digShort("docs.default.svc.cluster.local", "CNAME"); got != "docs.example.com." {
		t.Fatalf("docs CNAME = %q", got)
	}
	if got := digShort("-x", ip); got != "web.default.svc.cluster.local." {
		t.Fatalf("PTR of %s = %q", ip, got)
	}
	// A Service created now is answered shortly after.
	kubectl(t, s, "", "create", "service", "clusterip", "late", "--tcp=81:81")
	lateIP := kubectl(t, s, "", "get", "svc", "late", "-o", "jsonpath={.spec.clusterIP}")
	deadline := time.Now().Add(10 * time.Second)
	for digShort("late.default.svc.cluster.local") != lateIP {
		if time.Now().After(deadline) {
			t.Fatal("new Service never resolved")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Deleting it makes the name go away (NXDOMAIN: dig +short prints nothing).
	kubectl(t, s, "", "delete", "service", "late")
	deadline = time.Now().Add(10 * time.Second)
	for digShort("late.default.svc.cluster.local") != "" {
		if time.Now().After(deadline) {
			t.Fatal("deleted Service still resolves")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
