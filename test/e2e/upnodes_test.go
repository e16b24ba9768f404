package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/bpfobj/bpftest"
	"github.com/petrel-project/petrel/test/cluster"
)

// TestUpNodesLeavesNothing runs the command a user runs, `petrel up --nodes 2
// --segments 2`: both nodes join and turn Ready, SIGTERM removes every
// namespace, link, pin and cgroup; after a crash (kill -9) `petrel up
// --cleanup` does.
func TestUpNodesLeavesNothing(t *testing.T) {
	bpftest.Require(t)
	dir := t.TempDir()
	args := []string{"up", "--nodes", "2", "--segments", "2", "--data-dir", dir,
		"--secure-port", fmt.Sprint(cluster.FreePort(t)),
		"--etcd-client-url", fmt.Sprintf("https://127.0.0.1:%d", cluster.FreePort(t)),
		"--etcd-peer-url", fmt.Sprintf("https://127.0.0.1:%d", cluster.FreePort(t))}
	// The machine-wide topology lock: another package's test may hold it.
	start := func() (*exec.Cmd, chan struct{}) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Minute)
		for {
			cmd := exec.Command(cluster.Binary(t), args...)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			logf, _ := os.Create(filepath.Join(dir, fmt.Sprintf("up-%d.log", time.Now().UnixNano())))
			cmd.Stderr = logf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			up := make(chan bool, 1)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					if strings.HasPrefix(sc.Text(), "Petrel is up with 2 nodes") {
						up <- true
					}
				}
				_ = cmd.Wait()
				logf.Close()
				close(done)
			}()
			select {
			case <-up:
				return cmd, done
			case <-done:
				log, _ := os.ReadFile(logf.Name())
				if strings.Contains(string(log), "another multi-node topology is up") && time.Now().Before(deadline) {
					time.Sleep(2 * time.Second)
					continue
				}
				t.Fatalf("petrel up --nodes exited:\n%s", log)
			case <-time.After(4 * time.Minute):
				_ = cmd.Process.Kill()
				t.Fatal("petrel up --nodes 2 not up after 4 minutes")
			}
		}
	}
	checkReady := func() {
		t.Helper()
		cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "admin.kubeconfig"))
		if err != nil {
			t.Fatal(err)
		}
		cs := kubernetes.NewForConfigOrDie(cfg)
		nodes, err := cs.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil || len(nodes.Items) != 2 {
			t.Fatalf("nodes: %v (%v)", nodes, err)
		}
		for _, n := range nodes.Items {
			if !strings.HasPrefix(n.Name, "petrel-n") || len(n.Status.Addresses) == 0 {
				t.Errorf("node %s: %v", n.Name, n.Status.Addresses)
			}
		}
	}
	leftovers := func() []string {
		var left []string
		for i := range 2 {
			name := fmt.Sprintf("petrel-n%d", i)
			for _, p := range []string{filepath.Join("/run/netns", name), bpfobj.PinDir(name)} {
				if _, err := os.Stat(p); err == nil {
					left = append(left, p)
				}
			}
			mount, _ := bpfobj.CgroupV2Mount()
			if _, err := os.Stat(filepath.Join(mount, name)); err == nil {
				left = append(left, "cgroup "+name)
			}
		}
		if _, err := os.Stat("/run/netns/petrel-r"); err == nil {
			left = append(left, "/run/netns/petrel-r")
		}
		links, _ := netlink.LinkList()
		for _, l := range links {
			if n := l.Attrs().Name; n == "petrels0" || n == "petrels1" || strings.HasPrefix(n, "petreln") || strings.HasPrefix(n, "petrelr") {
				left = append(left, "link "+n)
			}
		}
		return left
	}

	cmd, done := start()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = exec.Command(cluster.Binary(t), "up", "--cleanup", "--data-dir", dir).Run()
	})
	checkReady()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("petrel up --nodes did not stop within 2 minutes of SIGTERM")
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("after SIGTERM, left: %v", left)
	}

	// A crash: the nodes get SIGTERM from the kernel when their parent
	// dies, but the namespaces and the rest stay until --cleanup.
	cmd, done = start()
	checkReady()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	time.Sleep(2 * time.Second)
	if left := leftovers(); len(left) == 0 {
		t.Error("after kill -9, nothing was left to clean up: the test would prove nothing")
	}
	if out, err := exec.Command(cluster.Binary(t), "up", "--cleanup", "--data-dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("petrel up --cleanup: %v\n%s", err, out)
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("after petrel up --cleanup, left: %v", left)
	}
}
