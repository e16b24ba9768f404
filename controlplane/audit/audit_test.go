package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const testPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  users: ["system:kube-proxy"]
- level: RequestResponse
  resources: [{group: "", resources: [configmaps]}]
- level: Request
  resources: [{group: "", resources: [secrets]}]
  omitStages: [RequestReceived]
- level: Metadata
`

func readEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("not a JSON event: %v: %s", err, sc.Text())
		}
		out = append(out, ev)
	}
	return out
}

func TestLevelsStagesAndObjects(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "sub", "audit.log")
	l, err := New(Options{PolicyFile: pol, LogPath: logPath, MaxSizeMB: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice := User{Name: "alice", Groups: []string{"dev"}}
	req := func(u User, verb, resource, name string) Request {
		return Request{User: u, Verb: verb, ResourceRequest: true, APIVersion: "v1", Resource: resource, Namespace: "ns", Name: name, RequestURI: "/api/v1/namespaces/ns/" + resource + "/" + name}
	}
	if rec := l.Begin(req(User{Name: "system:kube-proxy"}, "get", "secrets", "x"), "", time.Now()); rec != nil {
		t.Fatal("a None rule gave a record")
	}
	// nil records are safe to use.
	var none *Record
	none.Annotate("a", "b")
	none.SetRequestObject([]byte(`{}`))
	none.Finish(200, nil, nil, false)

	sec := l.Begin(req(alice, "update", "secrets", "s1"), "id-1", time.Now())
	sec.SetRequestObject([]byte(`{"kind":"Secret"}`))
	sec.Annotate("why", "test")
	sec.Finish(200, nil, []byte(`{"kind":"Secret","data":{}}`), false)

	cm := l.Begin(req(alice, "create", "configmaps", "c1"), "", time.Now())
	cm.SetRequestObject([]byte(`{"kind":"ConfigMap"}`))
	cm.Finish(201, nil, []byte(`{"kind":"ConfigMap"}`), false)

	pod := l.Begin(req(alice, "create", "pods", "p1"), "", time.Now())
	pod.SetRequestObject([]byte(`{"kind":"Pod"}`))
	pod.Finish(403, nil, nil, false)
	l.Close()

	evs := readEvents(t, logPath)
	type key struct{ name, stage string }
	got := map[key]map[string]any{}
	for _, ev := range evs {
		ref := ev["objectRef"].(map[string]any)
		got[key{ref["name"].(string), ev["stage"].(string)}] = ev
	}
	if len(evs) != 5 {
		t.Fatalf("want 5 events (secret: complete; configmap, pod: received+complete), got %d: %v", len(evs), evs)
	}
	s := got[key{"s1", "ResponseComplete"}]
	if s == nil || s["level"] != "Request" || s["auditID"] != "id-1" || s["requestObject"] == nil || s["responseObject"] != nil {
		t.Fatalf("secret event: %v", s)
	}
	if s["annotations"].(map[string]any)["why"] != "test" {
		t.Fatalf("secret annotations: %v", s["annotations"])
	}
	if _, ok := got[key{"s1", "RequestReceived"}]; ok {
		t.Fatal("the rule omits RequestReceived")
	}
	c := got[key{"c1", "ResponseComplete"}]
	if c == nil || c["level"] != "RequestResponse" || c["responseObject"] == nil || c["responseStatus"].(map[string]any)["code"] != float64(201) {
		t.Fatalf("configmap event: %v", c)
	}
	p := got[key{"p1", "ResponseComplete"}]
	if p == nil || p["level"] != "Metadata" || p["requestObject"] != nil || p["responseStatus"].(map[string]any)["code"] != float64(403) {
		t.Fatalf("pod event: %v", p)
	}
	if p["user"].(map[string]any)["username"] != "alice" || p["verb"] != "create" {
		t.Fatalf("pod event: %v", p)
	}
}

func TestDefaultPolicyLeavesProbesOut(t *testing.T) {
	dir := t.TempDir()
	l, err := New(Options{LogPath: filepath.Join(dir, "a.log")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if rec := l.Begin(Request{User: User{Name: "system:anonymous"}, Verb: "get", Path: "/readyz"}, "", time.Now()); rec != nil {
		t.Fatal("the default policy records /readyz")
	}
	if rec := l.Begin(Request{User: User{Name: "n", Groups: []string{"system:nodes"}}, Verb: "list", ResourceRequest: true, Resource: "pods"}, "", time.Now()); rec != nil {
		t.Fatal("the default policy records a node's list")
	}
	rec := l.Begin(Request{User: User{Name: "bob"}, Verb: "delete", ResourceRequest: true, Resource: "pods"}, "", time.Now())
	if rec.Level() != "Metadata" || rec.WantsRequest() {
		t.Fatalf("a user's delete: level %q", rec.Level())
	}
}

func TestBadPolicyIsRefused(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(pol, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{PolicyFile: pol, LogPath: filepath.Join(dir, "a.log")}, nil); err == nil {
		t.Fatal("a policy with an unknown level was accepted")
	}
}
