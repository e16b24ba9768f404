package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/cluster"
	"github.com/petrel-project/petrel/test/images"
	"github.com/petrel-project/petrel/test/registry"
)

// TestImageGC (issue 23 item 2): images pulled over plain HTTP from a
// registry named by --insecure-registry; with the GC thresholds lowered
// below the disk's usage, the image no container uses is removed and
// leaves Node.status.images, while the image of a running pod stays.
func TestImageGC(t *testing.T) {
	requireKubectl(t)
	reg := registry.Start(t, cluster.FreePort(t), registry.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	archive, err := images.BuildTestServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Two distinct images (their own digests), so that one can go while
	// the other is in use.
	for _, v := range []string{"used", "unused"} {
		if err := reg.PushVariant(ctx, archive, "petrel/"+v+":v1", v); err != nil {
			t.Fatal(err)
		}
	}
	u := cluster.StartUp(t, "--lease-renew-interval", "1s", "--insecure-registry", reg.Host,
		"--image-gc-high-threshold", "1", "--image-gc-low-threshold", "0", "--image-minimum-gc-age", "10s", "--image-gc-period", "2s")
	cs := u.Clientset()
	used, unused := reg.Host+"/petrel/used:v1", reg.Host+"/petrel/unused:v1"

	if _, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "user"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: used}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "once"},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "job", Image: unused, Command: []string{"true"}}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	podRunning(t, cs, "user")
	poll(t, "once to finish", 60*time.Second, func() error {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "once", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodSucceeded {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	})
	for _, repo := range []string{"petrel/used", "petrel/unused"} {
		if n := reg.Requests(http.MethodHead, "/v2/"+repo+"/manifests/", http.StatusOK); n != 1 {
			t.Fatalf("%d pulls of %s over plain HTTP, want 1", n, repo)
		}
	}
	if err := cs.CoreV1().Pods("default").Delete(ctx, "once", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	nodeImages := func() (map[string]bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, u.NodeName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		have := map[string]bool{}
		for _, im := range n.Status.Images {
			for _, name := range im.Names {
				have[name] = true
			}
		}
		return have, nil
	}
	poll(t, "the unused image collected", 90*time.Second, func() error {
		have, err := nodeImages()
		if err != nil {
			return err
		}
		if have[unused] {
			return fmt.Errorf("%s is still on the node: %v", unused, have)
		}
		if !have[used] {
			return fmt.Errorf("%s, in use, was removed: %v", used, have)
		}
		return nil
	})
	// Several more collections later the image in use is still there and
	// its pod still running.
	time.Sleep(5 * time.Second)
	have, err := nodeImages()
	if err != nil || !have[used] {
		t.Fatalf("the image in use left the node: %v %v", have, err)
	}
	podRunning(t, cs, "user")
}
