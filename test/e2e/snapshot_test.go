package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/controlplane/etcd"
	"github.com/petrel-project/petrel/test/cluster"
)

// TestEtcdSnapshotRestore: scheduled snapshots are taken and pruned to the
// retention; petrelctl etcd snapshot save, then a write after it, then the
// server's etcd is wiped and it starts with --cluster-reset-restore-path:
// what the snapshot held is there, the later write is not, and the
// cluster takes writes again (which a second start with the same flag
// keeps: the snapshot is not restored twice).
func TestEtcdSnapshotRestore(t *testing.T) {
	s := cluster.StartServer(t, "--etcd-snapshot-schedule", "1s", "--etcd-snapshot-retention", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := s.Clientset()
	create := func(name string) {
		t.Helper()
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name},
			Data: map[string]string{"k": name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		create(fmt.Sprintf("before-%d", i))
	}
	file := filepath.Join(t.TempDir(), "cluster.db")
	out, err := exec.CommandContext(ctx, cluster.Petrelctl(t), "etcd", "snapshot", "save", file, "--data-dir", s.DataDir,
		"--endpoints", fmt.Sprintf("https://127.0.0.1:%d", s.EtcdClient)).CombinedOutput()
	if err != nil {
		t.Fatalf("petrelctl etcd snapshot save: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
	create("after-snapshot")

	// Scheduled snapshots: at most the retention's 2 stay.
	dir := etcd.SnapshotDir(s.DataDir)
	count := func() int {
		entries, _ := os.ReadDir(dir)
		n := 0
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".db") {
				n++
			}
		}
		return n
	}
	waitFor(t, 20*time.Second, func() bool { return count() >= 2 })
	time.Sleep(3 * time.Second)
	if n := count(); n > 2 {
		t.Fatalf("%d scheduled snapshots in %s: the retention is 2", n, dir)
	}

	// Wipe the store and restore.
	s.Stop()
	if err := os.RemoveAll(filepath.Join(s.DataDir, "etcd")); err != nil {
		t.Fatal(err)
	}
	s.ExtraArgs = []string{"--cluster-reset-restore-path", file}
	s.Start()
	cs = s.Clientset()
	list, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	for _, cm := range list.Items {
		have[cm.Name] = cm.Data["k"]
	}
	for i := range 20 {
		if n := fmt.Sprintf("before-%d", i); have[n] != n {
			t.Errorf("%s is not in the restored cluster (have %d ConfigMaps)", n, len(have))
		}
	}
	if _, ok := have["after-snapshot"]; ok {
		t.Error("after-snapshot, written after the snapshot, is in the restored cluster")
	}
	// One member, and writes work.
	out, err = exec.CommandContext(ctx, cluster.Petrelctl(t), "etcd", "member", "list", "--data-dir", s.DataDir,
		"--endpoints", fmt.Sprintf("https://127.0.0.1:%d", s.EtcdClient)).CombinedOutput()
	if err != nil || strings.Count(string(out), "\n") != 2 {
		t.Fatalf("petrelctl etcd member list after the restore: %v\n%s", err, out)
	}
	create("after-restore")

	// Started again with the same flag: the snapshot is not restored over
	// what was written since.
	s.Stop()
	s.Start()
	if _, err := s.Clientset().CoreV1().ConfigMaps("default").Get(ctx, "after-restore", metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			t.Fatal("a restart with the same --cluster-reset-restore-path restored the snapshot again: after-restore is gone")
		}
		t.Fatal(err)
	}
}
