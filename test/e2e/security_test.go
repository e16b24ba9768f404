package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/petrel-project/petrel/test/cluster"
)

// privilegedPod is a pod that the baseline and restricted levels refuse.
const privilegedPod = `apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s}
spec:
  containers:
  - name: c
    image: busybox
    securityContext: {privileged: true}
`

// auditPolicy records Secret writes by service accounts with their request
// body, other Secret requests and pods as metadata, and nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Request
  resources: [{group: "", resources: [secrets]}]
  userGroups: ["system:serviceaccounts"]
  verbs: [create, update, patch]
- level: Metadata
  resources: [{group: "", resources: [secrets, pods]}]
- level: None
`

// auditEvent is the part of an audit.k8s.io/v1 Event the test reads.
type auditEvent struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Level      string `json:"level"`
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	User       struct {
		Username string   `json:"username"`
		Groups   []string `json:"groups"`
	} `json:"user"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"responseStatus"`
	RequestObject json.RawMessage   `json:"requestObject"`
	Annotations   map[string]string `json:"annotations"`
}

// allowPrivileged labels ns for the privileged Pod Security level, as a
// user does for pods that use the host's ports, paths or network: the
// cluster's default level, baseline, refuses them.
func allowPrivileged(t *testing.T, s *cluster.Server, ns string) {
	t.Helper()
	patch := []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`)
	if _, err := s.Clientset().CoreV1().Namespaces().Patch(context.Background(), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("labelling namespace %s privileged: %v", ns, err)
	}
}

func readAudit(t *testing.T, path string) []auditEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []auditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit log line is not an event: %v: %s", err, sc.Text())
		}
		evs = append(evs, ev)
	}
	return evs
}

// TestPodSecurityAndAudit: Pod Security admission by namespace labels
// (Kubernetes' messages; warnings as kubectl prints them; the cluster
// default baseline; kube-system exempt) and the audit log by a policy file
// (a Request-level event for a service account's Secret update; nothing
// for what the policy leaves out).
func TestPodSecurityAndAudit(t *testing.T) {
	requireKubectl(t)
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policyFile, []byte(auditPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "audit", "audit.log")
	s := cluster.StartServer(t, "--audit-policy-file", policyFile, "--audit-log-path", logFile)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := s.Clientset()
	apply := func(ns, name string) (string, error) {
		return s.Kubectl(ctx, fmt.Sprintf(privilegedPod, name, ns), "apply", "-f", "-")
	}

	t.Run("enforce=restricted refuses a privileged pod with Kubernetes' message", func(t *testing.T) {
		kubectl(t, s, "", "create", "namespace", "locked")
		kubectl(t, s, "", "label", "namespace", "locked", "pod-security.kubernetes.io/enforce=restricted")
		out, err := apply("locked", "priv")
		if err == nil {
			t.Fatalf("a privileged pod was admitted under enforce=restricted:\n%s", out)
		}
		mustContain(t, out, `pods "priv" is forbidden: violates PodSecurity "restricted:latest": privileged (container "c" must not set securityContext.privileged=true)`,
			"runAsNonRoot != true", "seccompProfile")
		if _, err := cs.CoreV1().Pods("locked").Get(ctx, "priv", metav1.GetOptions{}); err == nil {
			t.Fatal("the refused pod was stored")
		}
	})

	t.Run("warn=baseline admits with a warning", func(t *testing.T) {
		kubectl(t, s, "", "create", "namespace", "warned")
		kubectl(t, s, "", "label", "namespace", "warned", "pod-security.kubernetes.io/enforce=privileged", "pod-security.kubernetes.io/warn=baseline")
		out, err := apply("warned", "priv")
		if err != nil {
			t.Fatalf("refused under enforce=privileged: %v\n%s", err, out)
		}
		mustContain(t, out, `Warning: would violate PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)`, "pod/priv created")
	})

	t.Run("a new enforce label warns about the pods already there", func(t *testing.T) {
		out := kubectl(t, s, "", "label", "--overwrite", "namespace", "warned", "pod-security.kubernetes.io/enforce=baseline")
		mustContain(t, out, `existing pods in namespace "warned" violate the new PodSecurity enforce level "baseline:latest"`, "priv: privileged")
	})

	t.Run("a pod template is warned about, not refused", func(t *testing.T) {
		out := kubectl(t, s, `apiVersion: apps/v1
kind: Deployment
metadata: {name: privdeploy, namespace: locked}
spec:
  selector: {matchLabels: {app: p}}
  template:
    metadata: {labels: {app: p}}
    spec: {containers: [{name: c, image: busybox, securityContext: {privileged: true}}]}
`, "apply", "-f", "-")
		mustContain(t, out, `Warning: would violate PodSecurity "restricted:latest": privileged`, "deployment.apps/privdeploy created")
	})

	t.Run("unlabelled namespaces get the cluster default, baseline; kube-system is exempt", func(t *testing.T) {
		out, err := apply("default", "priv")
		if err == nil {
			t.Fatalf("the default namespace admitted a privileged pod:\n%s", out)
		}
		mustContain(t, out, `violates PodSecurity "baseline:latest": privileged`)
		if out, err := apply("kube-system", "priv"); err != nil {
			t.Fatalf("kube-system refused: %v\n%s", err, out)
		}
		// A pod within baseline is fine anywhere.
		kubectl(t, s, "", "run", "plain", "--image=busybox", "--restart=Never")
	})

	t.Run("an invalid level is refused with the field at fault", func(t *testing.T) {
		out, err := s.Kubectl(ctx, "", "label", "namespace", "locked", "--overwrite", "pod-security.kubernetes.io/enforce=bogus")
		if err == nil {
			t.Fatalf("an invalid level was accepted:\n%s", out)
		}
		mustContain(t, out, "metadata.labels[pod-security.kubernetes.io/enforce]", "bogus")
	})

	t.Run("the audit log holds the service account's Secret update at Request level", func(t *testing.T) {
		sa := serviceAccountClient(t, s, "default", "auditor", []rbacv1.PolicyRule{{APIGroups: []string{""},
			Resources: []string{"secrets", "configmaps"}, Verbs: []string{"get", "create", "update"}}})
		sec, err := sa.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "audited"},
			StringData: map[string]string{"k": "v1"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sec.StringData = map[string]string{"k": "v2"}
		if _, err := sa.CoreV1().Secrets("default").Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		cm, err := sa.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unaudited"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data = map[string]string{"a": "b"}
		if _, err := sa.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		const user = "system:serviceaccount:default:auditor"
		var update *auditEvent
		var evs []auditEvent
		waitFor(t, 10*time.Second, func() bool {
			evs = readAudit(t, logFile)
			for i, ev := range evs {
				if ev.Verb == "update" && ev.ObjectRef != nil && ev.ObjectRef.Resource == "secrets" && ev.ObjectRef.Name == "audited" {
					update = &evs[i]
					return true
				}
			}
			return false
		})
		if update.APIVersion != "audit.k8s.io/v1" || update.Kind != "Event" || update.Level != "Request" || update.Stage != "ResponseComplete" {
			t.Fatalf("the update's event: %+v", update)
		}
		if update.User.Username != user || update.ObjectRef.Namespace != "default" || update.ResponseStatus == nil || update.ResponseStatus.Code != 200 {
			t.Fatalf("the update's event: %+v", update)
		}
		if !strings.Contains(string(update.RequestObject), `"name":"audited"`) || !strings.Contains(string(update.RequestObject), `"v2"`) {
			t.Fatalf("the update's request object: %s", update.RequestObject)
		}
		for _, ev := range evs {
			if ev.ObjectRef != nil && ev.ObjectRef.Resource == "configmaps" {
				t.Fatalf("the policy leaves ConfigMaps out, but the log has %+v", ev)
			}
			if ev.Stage == "RequestReceived" {
				t.Fatalf("omitStages lists RequestReceived, but the log has %+v", ev)
			}
			if ev.User.Username == user && ev.Verb == "get" && ev.ObjectRef != nil && ev.ObjectRef.Resource == "secrets" {
				t.Fatalf("no get of a Secret was made by the service account: %+v", ev)
			}
		}
		// The refused pod is there at Metadata level, with its 403, the
		// reason and Pod Security's annotation.
		found := false
		for _, ev := range evs {
			if ev.ObjectRef != nil && ev.ObjectRef.Resource == "pods" && ev.ObjectRef.Namespace == "locked" && ev.ResponseStatus != nil && ev.ResponseStatus.Code == 403 {
				found = ev.Level == "Metadata" && len(ev.RequestObject) == 0 &&
					strings.Contains(ev.ResponseStatus.Message, "violates PodSecurity") &&
					ev.Annotations["pod-security.kubernetes.io/enforce-policy"] == "restricted:latest"
				if !found {
					t.Fatalf("the refused pod's event: %+v", ev)
				}
			}
		}
		if !found {
			t.Fatal("no event for the refused pod")
		}
		if fi, err := os.Stat(logFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("the audit log's mode: %v %v", fi.Mode(), err)
		}
	})
}
