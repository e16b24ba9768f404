package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/petrel-project/petrel/test/bench"
)

// The peer comparison tells kube-apiserver's consistent LISTs served by
// etcd from those served by its watch cache by its etcd_request metric;
// a server without the metric (Petrel) reads as unknown.
func TestEtcdPodLists(t *testing.T) {
	page := `# TYPE etcd_request_duration_seconds histogram
etcd_request_duration_seconds_count{operation="list",type="configmaps"} 9
etcd_request_duration_seconds_count{operation="list",type="pods"} 22
etcd_request_duration_seconds_count{operation="listWithCount",type="/registry/pods/"} 1
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, page)
	}))
	defer srv.Close()
	if n := etcdPodLists(context.Background(), srv.Client(), srv.URL); n != 22 {
		t.Errorf("etcdPodLists = %d, want 22", n)
	}
	page = "go_goroutines 12\n"
	if n := etcdPodLists(context.Background(), srv.Client(), srv.URL); n != -1 {
		t.Errorf("etcdPodLists without the metric = %d, want -1", n)
	}
}

// A peer that cannot run here is a note under the table and in the JSON,
// not a failure.
func TestReportNotes(t *testing.T) {
	rep := bench.NewReport("api")
	rep.Add("peer_server_rss_after_10_pods", "MB", 90, "lower", nil)
	rep.Note("kube-apiserver not found")
	var table, js bytes.Buffer
	if err := rep.Write(&table, "table"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(table.String(), "note: kube-apiserver not found\n") {
		t.Errorf("table does not end with the note:\n%s", table.String())
	}
	if err := rep.Write(&js, "json"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"notes": [`) {
		t.Errorf("JSON has no notes:\n%s", js.String())
	}
}
