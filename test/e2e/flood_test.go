package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/petrel-project/petrel/test/cluster"
)

// freshClient is an HTTPS client with the admin certificate that opens a new
// connection for every request.
func freshClient(t *testing.T, s *cluster.Server) *http.Client {
	t.Helper()
	tc, err := rest.TLSConfigFor(s.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
}

// flood holds up to n silent TCP connections to addr, opening new ones as the
// server closes old ones, until stop is closed.
func flood(addr string, n int, stop <-chan struct{}) (opened func() int) {
	var mu sync.Mutex
	total := 0
	held := make(chan net.Conn, n)
	go func() {
		defer func() {
			close(held)
			for c := range held {
				c.Close()
			}
		}()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if len(held) == cap(held) {
				// Full: drop the oldest (the server may have closed it) and go
				// on at about 500 new connections a second.
				(<-held).Close()
				time.Sleep(2 * time.Millisecond)
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				time.Sleep(time.Millisecond)
				continue
			}
			mu.Lock()
			total++
			mu.Unlock()
			held <- c
		}
	}()
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return total
	}
}

// TestConnectionFloodLeavesTheServerServing: 21,000 plain TCP connections
// once took every descriptor of the server, which stopped answering and died
// when etcd could not open a file. With 2,048 descriptors and a flood of
// 3,000 silent connections kept up, a client is served during and after, and
// the process lives.
func TestConnectionFloodLeavesTheServerServing(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	s := cluster.NewServer(t)
	s.Wrapper = []string{"prlimit", "--nofile=2048:2048", "--"}
	s.Start()
	client := freshClient(t, s)
	base := fmt.Sprintf("https://127.0.0.1:%d", s.Port)
	served := func(what string) error {
		resp, err := client.Get(base + "/api/v1/namespaces/default/configmaps?limit=1")
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d", what, resp.StatusCode)
		}
		return nil
	}
	ctx := context.Background()
	cs := s.Clientset()

	stop := make(chan struct{})
	opened := flood(fmt.Sprintf("127.0.0.1:%d", s.Port), 3000, stop)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
		}
	}()
	// Let the flood fill the server's places and grow old enough to be
	// closed for newcomers.
	waitFor(t, 30*time.Second, func() bool { return opened() >= 3000 })
	time.Sleep(1500 * time.Millisecond)
	for i := 0; i < 20; i++ {
		if err := served(fmt.Sprintf("request %d during the flood", i)); err != nil {
			t.Fatal(err)
		}
		// Writes reach etcd, which needs descriptors of its own.
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("during-%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %d during the flood: %v", i, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) >= 2048-64 {
		t.Errorf("the server holds %d of its 2,048 descriptors during the flood", len(fds))
	}
	close(stop)
	stopped = true
	if err := served("after the flood"); err != nil {
		t.Fatal(err)
	}
	if !s.Alive() {
		t.Fatal("the server died")
	}
	metrics := httpGetWith(t, client, base+"/metrics")
	if !strings.Contains(metrics, "petrel_connections_evicted_total") {
		t.Fatalf("no connection metrics:\n%.2000s", metrics)
	}
	t.Logf("flood opened %d connections; server held %d descriptors", opened(), len(fds))
}

func httpGetWith(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
