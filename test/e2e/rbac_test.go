package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestRBAC drives role-based access control as a user would: kubectl with
// a service account's token, Roles and bindings made with kubectl create.
func TestRBAC(t *testing.T) {
	requireKubectl(t)
	s := cluster.StartServer(t)
	kubectl(t, s, "", "create", "namespace", "team")
	kubectl(t, s, "", "create", "serviceaccount", "app", "-n", "team")
	var token string
	waitFor(t, 20*time.Second, func() bool {
		out, err := s.Kubectl(context.Background(), "", "create", "token", "app", "-n", "team")
		token = strings.TrimSpace(out)
		return err == nil
	})
	// as runs kubectl with the token alone (no client certificate).
	as := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		all := append([]string{"--kubeconfig", "/dev/null", "--cache-dir", filepath.Join(s.DataDir, "token-cache"),
			"--server", fmt.Sprintf("https://127.0.0.1:%d", s.Port), "--insecure-skip-tls-verify", "--token", token}, args...)
		out, err := exec.CommandContext(ctx, cluster.KubectlPath(), all...).CombinedOutput()
		return string(out), err
	}
	eventually := func(what string, cond func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ok, last := cond()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s; last output:\n%s", what, last)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	t.Run("nothing without a binding", func(t *testing.T) {
		out, err := as("get", "pods", "-n", "team")
		if err == nil || !strings.Contains(out, `Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:team:app" cannot list resource "pods" in API group "" in the namespace "team"`) {
			t.Fatalf("want Forbidden naming the permission: %v\n%s", err, out)
		}
		out, _ = as("auth", "can-i", "list", "pods", "-n", "team")
		mustContain(t, out, "no")
		// What every authenticated client may do: discovery and whoami.
		out, err = as("auth", "whoami")
		if err != nil {
			t.Fatalf("whoami: %v\n%s", err, out)
		}
		mustContain(t, out, "system:serviceaccount:team:app")
	})

	t.Run("a RoleBinding to view", func(t *testing.T) {
		kubectl(t, s, "", "create", "rolebinding", "app-view", "-n", "team", "--clusterrole=view", "--serviceaccount=team:app")
		eventually("the view binding lets the account list pods", func() (bool, string) {
			out, err := as("get", "pods", "-n", "team")
			return err == nil && strings.Contains(out, "No resources found"), out
		})
		out, _ := as("auth", "can-i", "create", "pods", "-n", "team")
		mustContain(t, out, "no")
		out, _ = as("auth", "can-i", "list", "pods", "-n", "default")
		mustContain(t, out, "no")
		out, err := as("get", "secrets", "-n", "team")
		if err == nil || !strings.Contains(out, "Forbidden") {
			t.Fatalf("view does not read secrets: %v\n%s", err, out)
		}
		out, _ = as("auth", "can-i", "--list", "-n", "team")
		mustContain(t, out, "pods/log", "[get list watch]", "selfsubjectaccessreviews.authorization.k8s.io")
		mustContain(t, kubectl(t, s, "", "get", "rolebindings", "-n", "team", "-o", "wide"), "app-view", "ClusterRole/view", "team/app")
	})

	t.Run("impersonation and access reviews", func(t *testing.T) {
		const app = "--as=system:serviceaccount:team:app"
		mustContain(t, kubectl(t, s, "", "auth", "can-i", "list", "pods", "-n", "team", app), "yes")
		out, _ := s.Kubectl(context.Background(), "", "auth", "can-i", "create", "pods", "-n", "team", app)
		mustContain(t, out, "no")
		out, err := s.Kubectl(context.Background(), "", "get", "secrets", "-n", "team", app)
		if err == nil || !strings.Contains(out, `User "system:serviceaccount:team:app" cannot list resource "secrets"`) {
			t.Fatalf("impersonated, the admin gets the account's rights only: %v\n%s", err, out)
		}
		out, err = as("get", "pods", "-n", "team", "--as=someone-else")
		if err == nil || !strings.Contains(out, `cannot impersonate resource "users" in API group "" at the cluster scope`) {
			t.Fatalf("the account may not impersonate: %v\n%s", err, out)
		}
		// Over HTTP, as tools such as kube-rbac-proxy ask.
		review := func(path, verb string) bool {
			t.Helper()
			body := fmt.Sprintf(`{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"system:serviceaccount:team:app",
				"groups":["system:serviceaccounts","system:serviceaccounts:team","system:authenticated"],
				"resourceAttributes":{"namespace":"team","verb":%q,"resource":"pods"}}}`, verb)
			if strings.Contains(path, "local") {
				body = strings.Replace(body, `"SubjectAccessReview"`, `"LocalSubjectAccessReview"`, 1)
			}
			code, _, data := rawRequest(t, s, "POST", path, "application/json", []byte(body))
			if code != 201 {
				t.Fatalf("%s: %d %s", path, code, data)
			}
			var out struct {
				Status struct{ Allowed bool } `json:"status"`
			}
			if err := json.Unmarshal(data, &out); err != nil {
				t.Fatal(err)
			}
			return out.Status.Allowed
		}
		const sar, lsar = "/apis/authorization.k8s.io/v1/subjectaccessreviews", "/apis/authorization.k8s.io/v1/namespaces/team/localsubjectaccessreviews"
		if !review(sar, "list") || review(sar, "delete") || !review(lsar, "watch") || review(lsar, "create") {
			t.Fatal("the access reviews disagree with the policy (want list yes, delete no, watch yes, create no)")
		}
		// TokenReview: whose a token is, for services that take them.
		tokenReview := func(tok string, audiences ...string) (ok bool, user string, errText string) {
			t.Helper()
			b, _ := json.Marshal(map[string]interface{}{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
				"spec": map[string]interface{}{"token": tok, "audiences": audiences}})
			code, _, data := rawRequest(t, s, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", "application/json", b)
			if code != 201 {
				t.Fatalf("tokenreviews: %d %s", code, data)
			}
			var out struct {
				Status struct {
					Authenticated bool
					User          struct{ Username string }
					Error         string
				} `json:"status"`
			}
			_ = json.Unmarshal(data, &out)
			return out.Status.Authenticated, out.Status.User.Username, out.Status.Error
		}
		if ok, user, e := tokenReview(token); !ok || user != "system:serviceaccount:team:app" {
			t.Fatalf("TokenReview of the account's token: %v %q %q", ok, user, e)
		}
		if ok, _, e := tokenReview(token, "https://vault.example"); ok || !strings.Contains(e, "not meant for") {
			t.Fatalf("TokenReview for another audience: %v %q", ok, e)
		}
		mustContain(t, kubectl(t, s, "", "api-resources", "--api-group=authorization.k8s.io"), "subjectaccessreviews", "localsubjectaccessreviews")
		code, st, _ := rawRequest(t, s, "POST", "/apis/authorization.k8s.io/v1/namespaces/other/localsubjectaccessreviews", "application/json",
			[]byte(`{"apiVersion":"authorization.k8s.io/v1","kind":"LocalSubjectAccessReview","spec":{"user":"u","resourceAttributes":{"namespace":"team","verb":"get","resource":"pods"}}}`))
		if code != 422 || !hasCause(st, "spec.resourceAttributes.namespace") {
			t.Fatalf("a local review about another namespace: %d %+v", code, st)
		}
	})

	t.Run("no escalation", func(t *testing.T) {
		kubectl(t, s, "", "create", "rolebinding", "app-admin", "-n", "team", "--clusterrole=admin", "--serviceaccount=team:app")
		eventually("admin lets the account create a role it holds", func() (bool, string) {
			out, err := as("create", "role", "secret-reader", "-n", "team", "--verb=get", "--resource=secrets")
			return err == nil, out
		})
		out, err := as("create", "rolebinding", "grab", "-n", "team", "--clusterrole=cluster-admin", "--user=mallory")
		if err == nil || !strings.Contains(out, "is attempting to grant RBAC permissions not currently held") {
			t.Fatalf("binding cluster-admin must be refused: %v\n%s", err, out)
		}
		out, err = as("create", "role", "node-reader", "-n", "team", "--verb=get", "--resource=nodes")
		if err == nil || !strings.Contains(out, `{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}`) {
			t.Fatalf("a role with a permission the account lacks must be refused: %v\n%s", err, out)
		}
		if out, err := as("create", "rolebinding", "hand-on", "-n", "team", "--clusterrole=edit", "--user=mallory"); err != nil {
			t.Fatalf("the account may hand on what it holds: %v\n%s", err, out)
		}
		out, _ = as("get", "namespaces")
		mustContain(t, out, "cannot list resource \"namespaces\" in API group \"\" at the cluster scope")
	})

	t.Run("aggregation", func(t *testing.T) {
		kubectl(t, s, `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: lease-viewer
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, list, watch]}
`, "apply", "-f", "-")
		eventually("view picks up the labelled role's rules", func() (bool, string) {
			out, err := as("get", "leases", "-n", "team")
			return err == nil, out
		})
		kubectl(t, s, "", "delete", "clusterrole", "lease-viewer")
		eventually("and drops them when it goes", func() (bool, string) {
			out, _ := s.Kubectl(context.Background(), "", "get", "clusterrole", "view", "-o", "yaml")
			return !strings.Contains(out, "leases"), out
		})
	})

	t.Run("bad input", func(t *testing.T) {
		code, st, _ := rawRequest(t, s, "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", "application/json",
			[]byte(`{"metadata":{"name":"bad"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Secret","name":"x"},"subjects":[{"kind":"Robot","name":"r"}]}`))
		if code != 422 || !hasCause(st, "roleRef.kind") || !hasCause(st, "subjects[0].kind") {
			t.Fatalf("want 422 on roleRef.kind and subjects[0].kind, got %d %+v", code, st)
		}
		code, st, _ = rawRequest(t, s, "POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles", "application/json",
			[]byte(`{"metadata":{"name":"bad"},"rules":[{"apiGroups":[""],"resources":["pods"]},{"verbs":["get"],"nonResourceURLs":["/metrics"]}]}`))
		if code != 422 || !hasCause(st, "rules[0].verbs") || !hasCause(st, "rules[1].nonResourceURLs") {
			t.Fatalf("want 422 on rules[0].verbs and rules[1].nonResourceURLs, got %d %+v", code, st)
		}
		out, err := s.Kubectl(context.Background(), "", "patch", "rolebinding", "app-view", "-n", "team", "--type=merge", "-p", `{"roleRef":{"name":"edit"}}`)
		if err == nil || !strings.Contains(out, "cannot change roleRef") {
			t.Fatalf("roleRef is immutable: %v\n%s", err, out)
		}
		for _, kind := range []string{"rolebinding", "role"} {
			if out, err := s.Kubectl(context.Background(), "", "get", kind, "bad", "-n", "team"); err == nil {
				t.Fatalf("an invalid %s was stored:\n%s", kind, out)
			}
		}
	})
}
