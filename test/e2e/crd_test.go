package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/petrel-project/petrel/test/cluster"
	"k8s.io/apimachinery/pkg/types"
)

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all, gadgets]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    selectableFields:
    - jsonPath: .spec.size
    additionalPrinterColumns:
    - name: Size
      type: string
      jsonPath: .spec.size
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    schema:
      openAPIV3Schema:
        type: object
        description: A Widget is a test kind.
        properties:
          spec:
            type: object
            description: What the widget should be.
            x-kubernetes-validations:
            - rule: "!has(self.replicas) || self.replicas <= 10"
              message: at most 10 replicas
            properties:
              size:
                type: string
                enum: [small, large]
                description: How big the widget is.
              color:
                type: string
                default: blue
              replicas:
                type: integer
                minimum: 0
          status:
            type: object
            properties:
              replicas:
                type: integer
`

const clusterCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: planets.example.com
spec:
  group: example.com
  scope: Cluster
  names: {plural: planets, singular: planet, kind: Planet}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// TestCustomResources: a CustomResourceDefinition applied with kubectl is
// served at once (discovery, OpenAPI for explain); its objects are
// validated (422 naming the field; a CEL rule), defaulted and pruned by its schema,
// printed with its columns, patched by server-side apply, scaled through
// /scale, written through /status, found by short name and category; a
// cluster-scoped one works too; and deleting the definition deletes its
// objects, and so does deleting a namespace; two versions read the same
// objects.
func TestCustomResources(t *testing.T) {
	requireKubectl(t)
	s := cluster.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kubectl(t, s, widgetCRD, "apply", "-f", "-")
	kubectl(t, s, clusterCRD, "apply", "-f", "-")
	start := time.Now()
	kubectl(t, s, "", "wait", "--for=condition=Established", "--timeout=20s", "crd/widgets.example.com", "crd/planets.example.com")
	t.Logf("established in %v", time.Since(start))

	kubectl(t, s, `apiVersion: example.com/v1
kind: Widget
metadata: {name: w1}
spec: {size: small, replicas: 1}
`, "apply", "--server-side", "--field-manager=creator", "-f", "-")
	out := kubectl(t, s, "", "get", "widget", "w1", "-o", "jsonpath={.spec.color}/{.metadata.generation}")
	if out != "blue/1" {
		t.Fatalf("defaulted widget: %q, want blue/1", out)
	}
	kubectl(t, s, `apiVersion: example.com/v1
kind: Widget
metadata: {name: w0}
spec: {size: small, unknown: dropped}
`, "create", "--validate=false", "-f", "-")
	strict, err := s.Kubectl(ctx, `apiVersion: example.com/v1
kind: Widget
metadata: {name: w3}
spec: {size: small, unknown: refused}
`, "create", "-f", "-")
	if err == nil || !strings.Contains(strict, `unknown field "spec.unknown"`) {
		t.Fatalf("unknown field under strict validation: %v\n%s", err, strict)
	}
	out = kubectl(t, s, "", "get", "widget", "w0", "-o", "jsonpath={.spec.color}/{.spec.unknown}")
	if out != "blue/" {
		t.Fatalf("pruned widget: %q, want blue/", out)
	}

	bad, err := s.Kubectl(ctx, `apiVersion: example.com/v1
kind: Widget
metadata: {name: w2}
spec: {size: huge}
`, "create", "-f", "-")
	if err == nil || !strings.Contains(bad, "spec.size") || !strings.Contains(bad, "Unsupported value") {
		t.Fatalf("invalid widget: %v\n%s", err, bad)
	}

	out = kubectl(t, s, "", "get", "wd")
	mustContain(t, out, "NAME", "SIZE", "REPLICAS", "w1", "small")
	out = kubectl(t, s, "", "get", "gadgets", "-o", "name")
	mustContain(t, out, "widget.example.com/w0", "widget.example.com/w1")

	out = kubectl(t, s, "", "explain", "widget.spec.size")
	mustContain(t, out, "How big the widget is")

	// Server-side apply: a second manager takes one field and leaves the
	// first manager's.
	kubectl(t, s, `apiVersion: example.com/v1
kind: Widget
metadata: {name: w1}
spec: {size: large}
`, "apply", "--server-side", "--field-manager=resizer", "--force-conflicts", "-f", "-")
	out = kubectl(t, s, "", "get", "widget", "w1", "-o", "jsonpath={.spec.size}/{.spec.replicas}/{.metadata.generation}")
	if out != "large/1/2" {
		t.Fatalf("after server-side apply: %q, want large/1/2\n%s", out, kubectl(t, s, "", "get", "widget", "w1", "--show-managed-fields", "-o", "yaml"))
	}
	out = kubectl(t, s, "", "get", "widget", "w1", "--show-managed-fields", "-o", "yaml")
	mustContain(t, out, "manager: resizer")
	// selectableFields: spec.size is a field label for lists and watches.
	if out := kubectl(t, s, "", "get", "widgets", "--field-selector", "spec.size=large", "-o", "name"); strings.TrimSpace(out) != "widget.example.com/w1" {
		t.Fatalf("widgets with spec.size=large: %q, want only w1", out)
	}
	if out := kubectl(t, s, "", "get", "widgets", "--field-selector", "spec.size!=large", "-o", "name"); strings.Contains(out, "/w1") || !strings.Contains(out, "/w0") {
		t.Fatalf("widgets with spec.size!=large: %q", out)
	}
	if out, err := s.Kubectl(ctx, "", "get", "widgets", "--field-selector", "spec.replicas=1"); err == nil || !strings.Contains(out, "field label not supported: spec.replicas") {
		t.Fatalf("a field that is not selectable: %v %s", err, out)
	}

	kubectl(t, s, "", "scale", "widget", "w1", "--replicas=3")
	if out, err := s.Kubectl(ctx, "", "scale", "widget", "w1", "--replicas=11"); err == nil || !strings.Contains(out, "at most 10 replicas") {
		t.Fatalf("scaling past the CEL rule: %v\n%s", err, out)
	}
	out = kubectl(t, s, "", "get", "widget", "w1", "-o", "jsonpath={.spec.replicas}")
	if out != "3" {
		t.Fatalf("scaled widget has %q replicas", out)
	}
	kubectl(t, s, "", "patch", "widget", "w1", "--subresource=status", "--type=merge", "-p", `{"status":{"replicas":3}}`)
	// The main resource ignores status; /status ignores everything else.
	kubectl(t, s, "", "patch", "widget", "w1", "--type=merge", "-p", `{"status":{"replicas":9}}`)
	out = kubectl(t, s, "", "get", "widget", "w1", "-o", "jsonpath={.status.replicas}")
	if out != "3" {
		t.Fatalf("status replicas %q, want 3", out)
	}
	out = kubectl(t, s, "", "get", "--raw", "/apis/example.com/v1/namespaces/default/widgets/w1/scale")
	mustContain(t, out, `"kind":"Scale"`, `"replicas":3`)

	kubectl(t, s, "apiVersion: example.com/v1\nkind: Planet\nmetadata: {name: mars}\nanything: goes\n", "apply", "-f", "-")
	out = kubectl(t, s, "", "get", "planet", "mars", "-o", "jsonpath={.anything}")
	if out != "goes" {
		t.Fatalf("preserved field: %q", out)
	}

	// Both versions read the same object (None conversion).
	out = kubectl(t, s, "", "get", "planets.v1beta1.example.com", "mars", "-o", "jsonpath={.apiVersion}/{.anything}")
	if out != "example.com/v1beta1/goes" {
		t.Fatalf("mars through v1beta1: %q", out)
	}
	out = kubectl(t, s, "", "get", "--raw", "/apis")
	mustContain(t, out, `"example.com"`)
	// kubectl reads the aggregated discovery document.
	out = kubectl(t, s, "", "api-resources", "--api-group=example.com")
	mustContain(t, out, "widgets", "wd", "Widget", "planets", "Planet")

	// A namespace's custom objects go with it.
	kubectl(t, s, "", "create", "namespace", "crdns")
	kubectl(t, s, "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w9, namespace: crdns}\nspec: {size: small}\n", "create", "-f", "-")
	kubectl(t, s, "", "delete", "namespace", "crdns", "--timeout=60s")
	kubectl(t, s, "", "create", "namespace", "crdns")
	if out := kubectl(t, s, "", "get", "widgets", "-n", "crdns", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Fatalf("widgets of a deleted namespace came back: %q", out)
	}

	// Defaults on read: a default added to the schema shows on an object
	// stored before it, as Kubernetes defaults what it reads from etcd.
	kubectl(t, s, "", "patch", "crd", "widgets.example.com", "--type=json", "-p",
		`[{"op":"add","path":"/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/finish","value":{"type":"string","default":"matte"}}]`)
	poll(t, "the new default on an object stored before it", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "widget", "w0", "-o", "jsonpath={.spec.finish}")
		if err != nil || out != "matte" {
			return fmt.Errorf("spec.finish %q (%v)", out, err)
		}
		return nil
	})

	// Duplicate fields in a custom resource, where its schema keeps
	// unknown fields too: Strict refuses them, naming each (JSON by its
	// path, YAML by its line, as Kubernetes words them).
	post := func(contentType string, body []byte) error {
		return s.Clientset().CoreV1().RESTClient().Post().AbsPath("/apis/example.com/v1/planets").Param("fieldValidation", "Strict").
			SetHeader("Content-Type", contentType).Body(body).Do(ctx).Error()
	}
	dup := []byte(`{"apiVersion":"example.com/v1","kind":"Planet","metadata":{"name":"dup"},"spec":{"moons":1,"moons":2},"spec":{"rings":true}}`)
	if err := post("application/json", dup); err == nil || !strings.Contains(err.Error(), `duplicate field "spec.moons"`) || !strings.Contains(err.Error(), `duplicate field "spec"`) {
		t.Fatalf("a custom resource with duplicate fields under Strict (JSON): %v", err)
	}
	dupYAML := []byte("apiVersion: example.com/v1\nkind: Planet\nmetadata:\n  name: dup\nspec:\n  moons: 1\n  moons: 2\n")
	if err := post("application/yaml", dupYAML); err == nil || !strings.Contains(err.Error(), `line 7: key "moons" already set in map`) {
		t.Fatalf("a custom resource with duplicate fields under Strict (YAML): %v", err)
	}
	// And in a server-side apply configuration.
	err = s.Clientset().CoreV1().RESTClient().Patch(types.ApplyPatchType).AbsPath("/apis/example.com/v1/planets/dup").
		Param("fieldManager", "dup-test").Param("fieldValidation", "Strict").Body(dupYAML).Do(ctx).Error()
	if err == nil || !strings.Contains(err.Error(), `line 7: key "moons" already set in map`) {
		t.Fatalf("an apply configuration with duplicate fields under Strict: %v", err)
	}

	kubectl(t, s, "", "delete", "crd", "widgets.example.com", "--timeout=30s")
	if out, err := s.Kubectl(ctx, "", "get", "--raw", "/apis/example.com/v1/namespaces/default/widgets"); err == nil {
		t.Fatalf("widgets still served after their definition went: %s", out)
	}
	// A new definition of the same name starts empty.
	kubectl(t, s, widgetCRD, "apply", "-f", "-")
	kubectl(t, s, "", "wait", "--for=condition=Established", "--timeout=20s", "crd/widgets.example.com")
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := s.Kubectl(ctx, "", "get", "widgets", "-o", "name")
		if err == nil && strings.TrimSpace(out) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("widgets after the definition was deleted and made again: %v %q", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
