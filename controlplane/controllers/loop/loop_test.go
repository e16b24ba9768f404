package loop

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLoopRetriesAndLooksAgain(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	done := make(chan string, 10)
	l := New("test", func(_ context.Context, key string) (time.Duration, error) {
		mu.Lock()
		calls[key]++
		n := calls[key]
		mu.Unlock()
		switch {
		case key == "ns/flaky" && n < 3:
			return 0, errors.New("not yet")
		case key == "ns/later" && n == 1:
			return 10 * time.Millisecond, nil
		}
		done <- key
		return 0, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx, 2)
	l.Enqueue(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "flaky"}})
	l.Add("ns/later")
	l.OwnerHandlers("ReplicaSet").OnAdd(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p",
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "owner", Controller: ptrTrue()}}}}, false)
	got := map[string]bool{}
	timeout := time.After(5 * time.Second)
	for len(got) < 3 {
		select {
		case k := <-done:
			got[k] = true
		case <-timeout:
			t.Fatalf("synced %v; calls %v", got, calls)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["ns/flaky"] != 3 || calls["ns/later"] != 2 || calls["ns/owner"] != 1 {
		t.Errorf("calls = %v, want flaky 3 (two failures), later 2 (asked again), owner 1", calls)
	}
}

func ptrTrue() *bool { b := true; return &b }
