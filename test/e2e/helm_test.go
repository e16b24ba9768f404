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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/images"
)

// helmVersion is the Helm the chart test runs, built from its module.
const helmVersion = "v4.3.2"

// chartWidgetCRD is the chart's crds/ folder: Helm installs what is there before
// it renders the templates, one of which is a Widget.
const chartWidgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.demo.petrel.test}
spec:
  group: demo.petrel.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              colour: {type: string, default: blue}
`

const chartWidgetTemplate = `apiVersion: demo.petrel.test/v1
kind: Widget
metadata:
  name: {{ include "demo.fullname" . }}
  labels:
    {{- include "demo.labels" . | nindent 4 }}
spec:
  size: {{ .Values.widgetSize | default 3 }}
`

// TestHelmChartWithCRDsAndAutoscaling is Helm as users run it: the stock
// `helm create` chart with autoscaling on (a HorizontalPodAutoscaler) and a
// crds/ folder whose kind one of its templates uses, installed with --wait
// (Helm waits for the Deployment to be available), upgraded, and
// uninstalled — which leaves the CRD, as Helm documents.
func TestHelmChartWithCRDsAndAutoscaling(t *testing.T) {
	helm := moduleTool(t, "PETREL_HELM", "helm.sh/helm/v4/cmd/helm", helmVersion)
	u := startPodCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	home := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, helm, append(args, "--kubeconfig", u.Kubeconfig)...)
		cmd.Dir = home
		// Helm's caches and config stay in the test's directory.
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
			"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			pods, _ := u.Kubectl(context.Background(), "", "get", "pods,events", "-o", "wide")
			t.Fatalf("helm %s: %v\n%s\n%s", strings.Join(args, " "), err, out, pods)
		}
		return string(out)
	}
	createOut, err := exec.CommandContext(ctx, helm, "create", filepath.Join(home, "demo")).CombinedOutput()
	if err != nil {
		t.Fatalf("helm create: %v\n%s", err, createOut)
	}
	chart := filepath.Join(home, "demo")
	if err := os.MkdirAll(filepath.Join(chart, "crds"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"crds/widgets.yaml": chartWidgetCRD, "templates/widget.yaml": chartWidgetTemplate} {
		if err := os.WriteFile(filepath.Join(chart, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repo, tag, _ := strings.Cut(images.TestServer, ":")
	set := "image.repository=" + repo + ",image.tag=" + tag + ",service.port=8080,autoscaling.enabled=true,autoscaling.maxReplicas=3"

	out := run("install", "demo", chart, "--set", set, "--wait", "--timeout", "3m")
	mustContain(t, out, "STATUS: deployed", "REVISION: 1")

	// The CRD came first, then the Widget that needs it, defaulted by its
	// schema.
	out = kubectl(t, u.Server, "", "get", "wdg", "demo", "-o", "jsonpath={.spec.size} {.spec.colour}")
	if out != "3 blue" {
		t.Fatalf("the chart's Widget: %q", out)
	}
	out = kubectl(t, u.Server, "", "get", "widgets")
	mustContain(t, out, "SIZE", "demo")
	// The HorizontalPodAutoscaler the chart makes with autoscaling on.
	hpa, err := u.Clientset().AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "demo", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the chart's HPA: %v", err)
	}
	if hpa.Spec.ScaleTargetRef.Name != "demo" || hpa.Spec.MaxReplicas != 3 {
		t.Fatalf("HPA %+v", hpa.Spec)
	}
	// --wait returned: the Deployment is available, its pod Ready.
	dep, err := u.Clientset().AppsV1().Deployments("default").Get(ctx, "demo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Status.AvailableReplicas < 1 {
		t.Fatalf("helm --wait returned before the Deployment was available: %+v", dep.Status)
	}

	out = run("upgrade", "demo", chart, "--set", set+",widgetSize=5", "--wait", "--timeout", "2m")
	mustContain(t, out, "REVISION: 2")
	if out := kubectl(t, u.Server, "", "get", "wdg", "demo", "-o", "jsonpath={.spec.size}"); out != "5" {
		t.Fatalf("after the upgrade the Widget's size is %q", out)
	}
	out = run("history", "demo")
	mustContain(t, out, "superseded", "deployed")
	// A value the CRD's schema refuses fails the upgrade with the field.
	cmd := exec.CommandContext(ctx, helm, "upgrade", "demo", chart, "--set", set+",widgetSize=-1", "--kubeconfig", u.Kubeconfig)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_CONFIG_HOME="+filepath.Join(home, "config"))
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "spec.size") {
		t.Fatalf("an invalid Widget was not refused with its field: %v\n%s", err, b)
	}

	run("uninstall", "demo", "--wait", "--timeout", "2m")
	poll(t, "the release's objects gone", 60*time.Second, func() error {
		if _, err := u.Clientset().AppsV1().Deployments("default").Get(ctx, "demo", metav1.GetOptions{}); err == nil {
			return fmt.Errorf("the Deployment is still there")
		}
		if out, _ := u.Kubectl(ctx, "", "get", "widgets", "-o", "name"); strings.TrimSpace(out) != "" {
			return fmt.Errorf("widgets left: %q", out)
		}
		return nil
	})
	// Helm never deletes a chart's CRDs.
	kubectl(t, u.Server, "", "get", "crd", "widgets.demo.petrel.test")
}
