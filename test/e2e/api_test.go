package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/petrel-project/petrel/test/cluster"
)

// rawRequest sends a request with the admin certificate and returns the status
// code and decoded Status (if any).
func rawRequest(t *testing.T, s *cluster.Server, method, path, contentType string, body []byte) (int, metav1.Status, []byte) {
	t.Helper()
	cfg := s.RESTConfig()
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, cfg.Host+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var st metav1.Status
	_ = json.Unmarshal(data, &st)
	return resp.StatusCode, st, data
}

func TestBadInput(t *testing.T) {
	s := cluster.StartServer(t)
	cs := s.Clientset()
	ctx := context.Background()
	cmPath := "/api/v1/namespaces/default/configmaps"
	listNames := func() []string {
		l, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, c := range l.Items {
			if c.Name != "kube-root-ca.crt" { // every namespace has it, as in Kubernetes
				n = append(n, c.Name)
			}
		}
		return n
	}

	t.Run("malformed JSON is 400", func(t *testing.T) {
		code, st, _ := rawRequest(t, s, "POST", cmPath, "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"`))
		if code != 400 || st.Reason != metav1.StatusReasonBadRequest || st.Kind != "Status" {
			t.Fatalf("got %d %+v", code, st)
		}
	})
	t.Run("unknown media type is 415", func(t *testing.T) {
		code, st, _ := rawRequest(t, s, "POST", cmPath, "text/csv", []byte(`a,b`))
		if code != 415 || st.Reason != metav1.StatusReasonUnsupportedMediaType {
			t.Fatalf("got %d %+v", code, st)
		}
	})
	t.Run("unknown field with Strict is 400 and Warn warns", func(t *testing.T) {
		body := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ignored"},"data":{"a":"b"},"bogus":1}`)
		code, st, _ := rawRequest(t, s, "POST", cmPath+"?fieldValidation=Strict", "application/json", body)
		if code != 400 || !strings.Contains(st.Message, `unknown field "bogus"`) {
			t.Fatalf("got %d %+v", code, st)
		}
		code, _, _ = rawRequest(t, s, "POST", cmPath+"?fieldValidation=Ignore", "application/json", body)
		if code != 201 {
			t.Fatalf("Ignore should create, got %d", code)
		}
	})
	t.Run("invalid name is 422 with the field", func(t *testing.T) {
		_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "Not_Valid"}}, metav1.CreateOptions{})
		st := statusOf(t, err, 422)
		if len(st.Details.Causes) == 0 || st.Details.Causes[0].Field != "metadata.name" {
			t.Fatalf("causes: %+v", st.Details)
		}
	})
	t.Run("ClusterIP outside the range is 422", func(t *testing.T) {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "outside"}, Spec: corev1.ServiceSpec{ClusterIP: "192.168.1.1",
			Ports: []corev1.ServicePort{{Port: 80}}}}
		_, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
		st := statusOf(t, err, 422)
		if !hasCause(st, "spec.clusterIPs[0]") {
			t.Fatalf("causes: %+v", st.Details)
		}
		if _, err := cs.CoreV1().Services("default").Get(ctx, "outside", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("invalid service stored: %v", err)
		}
	})
	t.Run("duplicate NodePort is 422 and nothing is stored", func(t *testing.T) {
		mk := func(name string) *corev1.Service {
			return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080}}}}
		}
		first, err := cs.CoreV1().Services("default").Create(ctx, mk("np1"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cs.CoreV1().Services("default").Create(ctx, mk("np2"), metav1.CreateOptions{})
		st := statusOf(t, err, 422)
		if !hasCause(st, "spec.ports[0].nodePort") || !strings.Contains(st.Message, "already allocated") {
			t.Fatalf("status: %+v", st)
		}
		if _, err := cs.CoreV1().Services("default").Get(ctx, "np2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("np2 stored: %v", err)
		}
		// The failed create must not have leaked its ClusterIP: every service has a distinct one.
		svcs, _ := cs.CoreV1().Services("default").List(ctx, metav1.ListOptions{})
		seen := map[string]string{}
		for _, sv := range svcs.Items {
			if other, dup := seen[sv.Spec.ClusterIP]; dup {
				t.Fatalf("ClusterIP %s given to %s and %s", sv.Spec.ClusterIP, other, sv.Name)
			}
			seen[sv.Spec.ClusterIP] = sv.Name
		}
		// Deleting the first frees its port for a new service.
		if err := cs.CoreV1().Services("default").Delete(ctx, first.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Services("default").Create(ctx, mk("np3"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("NodePort not released on delete: %v", err)
		}
	})
	t.Run("missing required field is 422", func(t *testing.T) {
		_, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "empty"}}, metav1.CreateOptions{})
		st := statusOf(t, err, 422)
		if !hasCause(st, "spec.containers") {
			t.Fatalf("status: %+v", st)
		}
	})
	t.Run("409 on duplicate and stale update", func(t *testing.T) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dup"}, Data: map[string]string{"a": "1"}}
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
		if !apierrors.IsAlreadyExists(err) {
			t.Fatalf("want AlreadyExists, got %v", err)
		}
		cur, _ := cs.CoreV1().ConfigMaps("default").Get(ctx, "dup", metav1.GetOptions{})
		stale := cur.DeepCopy()
		cur.Data["a"] = "2"
		if _, err := cs.CoreV1().ConfigMaps("default").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		stale.Data["a"] = "3"
		_, err = cs.CoreV1().ConfigMaps("default").Update(ctx, stale, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			t.Fatalf("want Conflict, got %v", err)
		}
	})
	t.Run("404 and body limit", func(t *testing.T) {
		_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "nope", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Fatalf("want NotFound, got %v", err)
		}
		big := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":"` + strings.Repeat("x", 4<<20) + `"}}`)
		code, st, _ := rawRequest(t, s, "POST", cmPath, "application/json", big)
		if code != 413 {
			t.Fatalf("oversized body: %d %+v", code, st)
		}
	})
	t.Run("terminating namespace rejects new objects", func(t *testing.T) {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "closing"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// A finalizer on a pod-less object keeps the namespace in Terminating long enough.
		if _, err := cs.CoreV1().ConfigMaps("closing").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "held", Finalizers: []string{"example.com/hold"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, "closing", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Like Kubernetes' admission, the check reads a cache that follows etcd
		// within moments.
		var err error
		for i := 0; i < 50; i++ {
			_, err = cs.CoreV1().ConfigMaps("closing").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "late-"}}, metav1.CreateOptions{})
			if err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "being terminated") {
			t.Fatalf("want Forbidden (terminating), got %v", err)
		}
		// Release the finalizer: the namespace then goes away.
		// A patch, not get-then-update: the namespace controller is deleting
		// the object at the same moment and would make an update conflict.
		if _, err := cs.CoreV1().ConfigMaps("closing").Patch(ctx, "held", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, func() bool {
			_, err := cs.CoreV1().Namespaces().Get(ctx, "closing", metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
	})
	if names := listNames(); strings.Join(names, ",") != "dup,ignored" {
		t.Fatalf("a rejected object was stored: %v", names)
	}
}

func statusOf(t *testing.T, err error, code int32) metav1.Status {
	t.Helper()
	se, ok := err.(apierrors.APIStatus)
	if !ok {
		t.Fatalf("want a Status error with code %d, got %v", code, err)
	}
	st := se.Status()
	if st.Code != code {
		t.Fatalf("want code %d, got %d: %s", code, st.Code, st.Message)
	}
	return st
}

func hasCause(st metav1.Status, fieldPath string) bool {
	if st.Details == nil {
		return false
	}
	for _, c := range st.Details.Causes {
		if c.Field == fieldPath {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestClientGo(t *testing.T) {
	s := cluster.StartServer(t)
	cs := s.Clientset()
	ctx := context.Background()

	t.Run("informer syncs and follows", func(t *testing.T) {
		for i := 0; i < 20; i++ {
			mustCreateCM(t, cs, "pre-"+strconv.Itoa(i), map[string]string{"batch": "pre"})
		}
		factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace("default"))
		inf := factory.Core().V1().ConfigMaps()
		events := make(chan string, 100)
		_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(_, obj interface{}) { events <- "update:" + obj.(*corev1.ConfigMap).Name },
			DeleteFunc: func(obj interface{}) {
				if cm, ok := obj.(*corev1.ConfigMap); ok {
					events <- "delete:" + cm.Name
				}
			},
		})
		stop := make(chan struct{})
		defer close(stop)
		factory.Start(stop)
		if !cache.WaitForCacheSync(stop, inf.Informer().HasSynced) {
			t.Fatal("informer did not sync")
		}
		if l, _ := inf.Lister().List(labels.Everything()); len(l) < 20 {
			t.Fatalf("informer holds %d configmaps, want >= 20", len(l))
		}
		mustCreateCM(t, cs, "late", nil)
		waitFor(t, 5*time.Second, func() bool { _, err := inf.Lister().ConfigMaps("default").Get("late"); return err == nil })
		cm, _ := cs.CoreV1().ConfigMaps("default").Get(ctx, "late", metav1.GetOptions{})
		cm.Data = map[string]string{"x": "y"}
		if _, err := cs.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "late", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{"update:late": false, "delete:late": false}
		timeout := time.After(5 * time.Second)
		for !want["update:late"] || !want["delete:late"] {
			select {
			case e := <-events:
				if _, ok := want[e]; ok {
					want[e] = true
				}
			case <-timeout:
				t.Fatalf("informer missed events: %v", want)
			}
		}
	})

	t.Run("RetryOnConflict", func(t *testing.T) {
		mustCreateCM(t, cs, "counter", map[string]string{})
		cm, _ := cs.CoreV1().ConfigMaps("default").Get(ctx, "counter", metav1.GetOptions{})
		// Someone else writes first: our copy is stale.
		other := cm.DeepCopy()
		other.Data = map[string]string{"n": "other"}
		if _, err := cs.CoreV1().ConfigMaps("default").Update(ctx, other, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		cm.Data = map[string]string{"n": "stale"}
		if _, err := cs.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
			t.Fatalf("want 409 Conflict, got %v", err)
		}
		attempts := 0
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			attempts++
			cur := cm
			if attempts > 1 {
				var err error
				if cur, err = cs.CoreV1().ConfigMaps("default").Get(ctx, "counter", metav1.GetOptions{}); err != nil {
					return err
				}
			}
			cur.Data = map[string]string{"n": "mine"}
			_, err := cs.CoreV1().ConfigMaps("default").Update(ctx, cur, metav1.UpdateOptions{})
			return err
		})
		if err != nil || attempts != 2 {
			t.Fatalf("RetryOnConflict: err=%v attempts=%d", err, attempts)
		}
	})

	t.Run("limit and continue", func(t *testing.T) {
		var got []string
		opts := metav1.ListOptions{Limit: 7, LabelSelector: "batch=pre"}
		var rv string
		for {
			l, err := cs.CoreV1().ConfigMaps("default").List(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if rv == "" {
				rv = l.ResourceVersion
			} else if l.ResourceVersion != rv {
				t.Fatalf("pages from different snapshots: %s vs %s", rv, l.ResourceVersion)
			}
			for _, c := range l.Items {
				got = append(got, c.Name)
			}
			if len(l.Items) > 7 {
				t.Fatalf("page of %d items with limit 7", len(l.Items))
			}
			if l.Continue == "" {
				break
			}
			opts.Continue = l.Continue
		}
		if len(got) != 20 {
			t.Fatalf("paged list returned %d items, want 20: %v", len(got), got)
		}
	})

	t.Run("watch resumes after a server restart", func(t *testing.T) {
		mustCreateCM(t, cs, "before-restart", nil)
		l, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rv := l.ResourceVersion
		s.Kill()
		s.Start()
		cs2 := s.Clientset()
		mustCreateCM(t, cs2, "after-restart", nil)
		w, err := cs2.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		select {
		case ev := <-w.ResultChan():
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok || ev.Type != "ADDED" || cm.Name != "after-restart" {
				t.Fatalf("first event after rv %s: %s %#v", rv, ev.Type, ev.Object)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no event after restart")
		}
		// A watch from a revision that etcd has compacted away is 410 Gone.
		w2, err := cs2.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: "1"})
		if err == nil {
			ev := <-w2.ResultChan()
			w2.Stop()
			st, ok := ev.Object.(*metav1.Status)
			if ev.Type != "ERROR" || !ok || st.Code != 410 {
				t.Fatalf("watch from rv 1 after restart: %s %#v", ev.Type, ev.Object)
			}
		} else if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Fatalf("want 410, got %v", err)
		}
	})

	t.Run("protobuf", func(t *testing.T) {
		cfg := s.RESTConfig()
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
		cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf"
		pcs := kubernetes.NewForConfigOrDie(cfg)
		mustCreateCM(t, pcs, "proto", map[string]string{"enc": "pb"})
		cm, err := pcs.CoreV1().ConfigMaps("default").Get(ctx, "proto", metav1.GetOptions{})
		if err != nil || cm.Labels["enc"] != "pb" {
			t.Fatalf("protobuf get: %v %+v", err, cm)
		}
		w, err := pcs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: cm.ResourceVersion})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		mustCreateCM(t, pcs, "proto2", nil)
		select {
		case ev := <-w.ResultChan():
			if c, ok := ev.Object.(*corev1.ConfigMap); !ok || c.Name != "proto2" {
				t.Fatalf("protobuf watch event: %#v", ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no protobuf watch event")
		}
	})
}

func mustCreateCM(t *testing.T, cs kubernetes.Interface, name string, lbls map[string]string) {
	t.Helper()
	_, err := cs.CoreV1().ConfigMaps("default").Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}
