package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestExternalEtcdTLSCluster runs two servers on an external etcd cluster: three
// members of Debian's etcd with TLS and client certificates, started by
// the test. The second server joins the first (one identity); a write
// through one is read through the other; with one etcd member killed,
// both still take writes; and the data is in that etcd (not in an embedded
// one).
func TestExternalEtcdTLSCluster(t *testing.T) {
	e := cluster.StartEtcdCluster(t, 3)
	a := cluster.StartServer(t, e.ServerArgs()...)
	b := cluster.StartServer(t, append(e.ServerArgs(), a.JoinArgs(t)...)...)
	checkOneIdentity(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	create := func(s *cluster.Server, name string) error {
		_, err := s.Clientset().CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err
	}
	if err := create(a, "via-a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		_, err := b.Clientset().CoreV1().ConfigMaps("default").Get(ctx, "via-a", metav1.GetOptions{})
		return err == nil
	})
	cli := e.Client()
	defer cli.Close()
	resp, err := cli.Get(ctx, "/registry/configmaps/default/via-a")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("via-a is not in the external etcd: %v, %d keys", err, len(resp.Kvs))
	}

	e.Members[0].Kill()
	for i, s := range []*cluster.Server{a, b} {
		name := fmt.Sprintf("member-down-%d", i)
		waitFor(t, 20*time.Second, func() bool { return create(s, name) == nil })
	}
	waitFor(t, 10*time.Second, func() bool {
		list, err := a.Clientset().CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
		n := 0
		for _, cm := range list.Items {
			if cm.Name == "member-down-0" || cm.Name == "member-down-1" || cm.Name == "via-a" {
				n++
			}
		}
		return err == nil && n == 3
	})
}
