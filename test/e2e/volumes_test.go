package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/images"
)

// TestDynamicLocalVolumes: the default StorageClass `local` gives a claim
// that names no class a directory on the node of its first pod
// (WaitForFirstConsumer); the data outlives the pod and reaches the next
// one; the volume goes with its claim; a StatefulSet's claim templates get
// a volume per replica; a claim of another class binds to a matching
// volume made by hand.
func TestDynamicLocalVolumes(t *testing.T) {
	requireKubectl(t)
	u := startPodCluster(t)
	cs := u.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	apply := func(t *testing.T, manifest string) { kubectl(t, u.Server, manifest, "apply", "-f", "-") }

	out := kubectl(t, u.Server, "", "get", "storageclass")
	mustContain(t, out, "local (default)", "petrel.io/local-path", "Delete", "WaitForFirstConsumer")

	apply(t, `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
`)
	pvc, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
	if err != nil || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "local" {
		t.Fatalf("the claim did not get the default class: %v %v", pvc.Spec.StorageClassName, err)
	}
	time.Sleep(time.Second)
	if pvc, _ = cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{}); pvc.Spec.VolumeName != "" {
		t.Fatalf("a WaitForFirstConsumer claim was bound before any pod used it: %s", pvc.Spec.VolumeName)
	}
	pod := func(name, cmd string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: %s
    command: ["sh", "-c", %q]
    volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]
`, name, images.TestServer, cmd)
	}
	apply(t, pod("writer", "echo kept-across-pods > /data/f"))
	poll(t, "writer Succeeded", 90*time.Second, func() error {
		p := getPod(ctx, t, cs, "writer")
		if p.Status.Phase != corev1.PodSucceeded {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	})
	pvc, _ = cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Annotations["volume.kubernetes.io/selected-node"] != u.NodeName {
		t.Fatalf("claim after its first pod: phase %s, annotations %v", pvc.Status.Phase, pvc.Annotations)
	}
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Status.Phase != corev1.VolumeBound || pv.Spec.HostPath == nil || pv.Spec.NodeAffinity == nil || pv.Spec.StorageClassName != "local" {
		t.Fatalf("provisioned volume: %+v", pv)
	}
	if !strings.HasPrefix(pv.Spec.HostPath.Path, filepath.Join(u.DataDir, "storage")) {
		t.Fatalf("volume directory %s is not under the data dir's storage", pv.Spec.HostPath.Path)
	}
	if b, err := os.ReadFile(filepath.Join(pv.Spec.HostPath.Path, "f")); err != nil || string(b) != "kept-across-pods\n" {
		t.Fatalf("the file on the node: %q %v", b, err)
	}
	apply(t, pod("reader", "cat /data/f"))
	poll(t, "reader reads the writer's file", 90*time.Second, func() error {
		out, err := u.Server.Kubectl(ctx, "", "logs", "reader")
		if err != nil || !strings.Contains(out, "kept-across-pods") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	kubectl(t, u.Server, "", "delete", "pod", "writer", "reader", "--wait=true")
	kubectl(t, u.Server, "", "delete", "pvc", "data", "--wait=true")
	poll(t, "the provisioned volume deleted with its claim", 30*time.Second, func() error {
		if _, err := cs.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("volume %s still there: %v", pv.Name, err)
		}
		return nil
	})

	t.Run("a StatefulSet's claim templates get a volume per replica", func(t *testing.T) {
		apply(t, fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: c
        image: %s
        command: ["sh", "-c", "hostname > /var/lib/db/who; exec /testserver"]
        volumeMounts: [{name: state, mountPath: /var/lib/db}]
  volumeClaimTemplates:
  - metadata: {name: state}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 16Mi}}}
`, images.TestServer))
		poll(t, "both replicas Running on bound claims", 120*time.Second, func() error {
			for i := 0; i < 2; i++ {
				p, err := cs.CoreV1().Pods("default").Get(ctx, fmt.Sprintf("db-%d", i), metav1.GetOptions{})
				if err != nil || p.Status.Phase != corev1.PodRunning {
					return fmt.Errorf("db-%d: %v", i, err)
				}
				c, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, fmt.Sprintf("state-db-%d", i), metav1.GetOptions{})
				if err != nil || c.Status.Phase != corev1.ClaimBound {
					return fmt.Errorf("state-db-%d: %v", i, err)
				}
			}
			return nil
		})
		a, _ := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "state-db-0", metav1.GetOptions{})
		b, _ := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "state-db-1", metav1.GetOptions{})
		if a.Spec.VolumeName == b.Spec.VolumeName {
			t.Fatalf("both replicas on volume %s", a.Spec.VolumeName)
		}
	})

	t.Run("a claim of another class binds to a matching volume made by hand", func(t *testing.T) {
		dir := t.TempDir()
		apply(t, fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: manual-small}
spec:
  storageClassName: manual
  capacity: {storage: 10Mi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: %[1]s/small}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: manual-big}
spec:
  storageClassName: manual
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: %[1]s/big}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: wants-100m}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 100Mi}}
`, dir))
		poll(t, "the claim bound to the volume that fits", 30*time.Second, func() error {
			c, err := cs.CoreV1().PersistentVolumeClaims("default").Get(ctx, "wants-100m", metav1.GetOptions{})
			if err != nil || c.Status.Phase != corev1.ClaimBound || c.Spec.VolumeName != "manual-big" {
				return fmt.Errorf("claim: %v %v", c.Status.Phase, err)
			}
			return nil
		})
		kubectl(t, u.Server, "", "delete", "pvc", "wants-100m", "--wait=true")
		poll(t, "a hand-made volume Released, not deleted", 30*time.Second, func() error {
			pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, "manual-big", metav1.GetOptions{})
			if err != nil || pv.Status.Phase != corev1.VolumeReleased {
				return fmt.Errorf("volume: %v", err)
			}
			return nil
		})
	})

	t.Run("a pod whose claim is missing waits with Kubernetes' reason", func(t *testing.T) {
		apply(t, `apiVersion: v1
kind: Pod
metadata: {name: orphan}
spec:
  containers: [{name: c, image: busybox}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: nothere}}]
`)
		poll(t, "PodScheduled=False naming the claim", 30*time.Second, func() error {
			p := getPod(ctx, t, cs, "orphan")
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && strings.Contains(c.Message, `persistentvolumeclaim "nothere" not found`) {
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", p.Status.Conditions)
		})
	})
}
