// Package resourcemetrics serves the built-in metrics.k8s.io/v1beta1 (node
// and pod metrics, from the nodes' Summaries) so that kubectl top and the
// HPA controller work without an add-on. It reads stores and nodes and
// nothing of the REST machinery, whose error answers the API server lends
// it.
package resourcemetrics

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/petrel-project/petrel/controlplane/metricsapi"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// Prefix is where the built-in metrics.k8s.io/v1beta1 is served.
const Prefix = "/apis/metrics.k8s.io/v1beta1/"

// Handler serves Prefix.
type Handler struct {
	// Fetcher reads the nodes' figures; nil: the API is not served (the
	// server cannot reach nodes).
	Fetcher *metricsapi.Fetcher
	// Registry holds the nodes and pods the figures are of.
	Registry *generic.Registry
	// WriteError, NotFound and WriteJSON answer as the rest of the API.
	WriteError func(http.ResponseWriter, *http.Request, error)
	NotFound   func(http.ResponseWriter, *http.Request)
	WriteJSON  func(w http.ResponseWriter, code int, v interface{})
	// Context bounds a request's work as the API server bounds any other
	// request's.
	Context func(*http.Request) (context.Context, context.CancelFunc)
}

// ServeHTTP answers GET of metrics.k8s.io/v1beta1 nodes and pods (one or
// a list, label selectors, pods by namespace or in all) from the nodes'
// Summaries.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.Fetcher == nil {
		h.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.WriteError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Group: metricsv1beta1.GroupName, Resource: "nodes"}, strings.ToLower(r.Method)))
		return
	}
	rest := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, Prefix), "/"), "/")
	var namespace string
	if len(rest) >= 3 && rest[0] == "namespaces" && rest[2] == "pods" {
		namespace, rest = rest[1], rest[2:]
	}
	if len(rest) > 2 || (rest[0] != "nodes" && rest[0] != "pods") || (rest[0] == "nodes" && namespace != "") {
		h.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	if isTrue(q.Get("watch")) {
		h.WriteError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Group: metricsv1beta1.GroupName, Resource: rest[0]}, "watch"))
		return
	}
	name := ""
	if len(rest) == 2 {
		name = rest[1]
	}
	ctx, cancel := h.Context(r)
	defer cancel()
	opts := &metav1.ListOptions{LabelSelector: q.Get("labelSelector"), FieldSelector: q.Get("fieldSelector")}
	if name != "" {
		opts = &metav1.ListOptions{FieldSelector: "metadata.name=" + name}
	}
	// Nodes: every one the selector picks. Pods: the Running ones the
	// selectors pick, each asked of its node.
	nodes, err := h.Registry.Store(corev1.SchemeGroupVersion.WithResource("nodes")).List(ctx, "", &metav1.ListOptions{})
	if rest[0] == "nodes" {
		nodes, err = h.Registry.Store(corev1.SchemeGroupVersion.WithResource("nodes")).List(ctx, "", opts)
	}
	if err != nil {
		h.WriteError(w, r, err)
		return
	}
	byName := map[string]*corev1.Node{}
	for _, o := range nodes.Items {
		n := o.(*corev1.Node)
		byName[n.Name] = n
	}
	if rest[0] == "nodes" {
		if name != "" && len(nodes.Items) == 0 {
			h.WriteError(w, r, apierrors.NewNotFound(metricsv1beta1.Resource("nodes"), name))
			return
		}
		list := nodeList(nodes.Items)
		sums := h.Fetcher.Summaries(ctx, list)
		out := &metricsv1beta1.NodeMetricsList{TypeMeta: metav1.TypeMeta{Kind: "NodeMetricsList", APIVersion: metricsv1beta1.SchemeGroupVersion.String()}}
		for _, n := range list {
			if m := metricsapi.NodeMetrics(n, sums[n.Name]); m != nil {
				out.Items = append(out.Items, *m)
			}
		}
		h.writeMetrics(w, r, name, "nodes", out, len(out.Items))
		return
	}
	pods, err := h.Registry.Store(corev1.SchemeGroupVersion.WithResource("pods")).List(ctx, namespace, opts)
	if err != nil {
		h.WriteError(w, r, err)
		return
	}
	var want []*corev1.Node
	seen := map[string]bool{}
	var running []*corev1.Pod
	for _, o := range pods.Items {
		p := o.(*corev1.Pod)
		if p.Status.Phase != corev1.PodRunning || byName[p.Spec.NodeName] == nil {
			continue
		}
		running = append(running, p)
		if !seen[p.Spec.NodeName] {
			seen[p.Spec.NodeName] = true
			want = append(want, byName[p.Spec.NodeName])
		}
	}
	var sums map[string]*statsv1alpha1.Summary
	if len(want) > 0 {
		sums = h.Fetcher.Summaries(ctx, want)
	}
	out := &metricsv1beta1.PodMetricsList{TypeMeta: metav1.TypeMeta{Kind: "PodMetricsList", APIVersion: metricsv1beta1.SchemeGroupVersion.String()}}
	for _, p := range running {
		if m := metricsapi.PodMetrics(p, sums[p.Spec.NodeName]); m != nil {
			out.Items = append(out.Items, *m)
		}
	}
	h.writeMetrics(w, r, name, "pods", out, len(out.Items))
}

func nodeList(items []runtime.Object) []*corev1.Node {
	out := make([]*corev1.Node, 0, len(items))
	for _, o := range items {
		out = append(out, o.(*corev1.Node))
	}
	return out
}

// writeMetrics writes a list, or its one item for a get (404 when the
// object has no figures, as metrics-server answers).
func (h *Handler) writeMetrics(w http.ResponseWriter, r *http.Request, name, resource string, list interface{}, n int) {
	if name == "" {
		h.WriteJSON(w, http.StatusOK, list)
		return
	}
	if n == 0 {
		h.WriteError(w, r, apierrors.NewNotFound(metricsv1beta1.Resource(resource), name))
		return
	}
	switch l := list.(type) {
	case *metricsv1beta1.NodeMetricsList:
		item := l.Items[0]
		item.TypeMeta = metav1.TypeMeta{Kind: "NodeMetrics", APIVersion: metricsv1beta1.SchemeGroupVersion.String()}
		h.WriteJSON(w, http.StatusOK, &item)
	case *metricsv1beta1.PodMetricsList:
		item := l.Items[0]
		item.TypeMeta = metav1.TypeMeta{Kind: "PodMetrics", APIVersion: metricsv1beta1.SchemeGroupVersion.String()}
		h.WriteJSON(w, http.StatusOK, &item)
	}
}

// isTrue parses a boolean query parameter as Kubernetes does
// (strconv.ParseBool), as the API server's own copy does.
func isTrue(v string) bool {
	b, err := strconv.ParseBool(v)
	return err == nil && b
}
