// Package webhookserver is an admission webhook for tests, served by the
// test image's server (in a pod, behind a Service) and by e2e tests on the
// host (by URL): AdmissionReview v1 in, AdmissionReview v1 out.
//
//	/mutate  allows, adding the label webhook.petrel.io/mutated=<name> by a
//	         JSONPatch, with a warning
//	/label/K allows, adding the label webhook.petrel.io/K=<name>
//	/deny    refuses with the message "denied by <name>: <kind> <name>"
//	/allow   allows
//	/slow/N  allows after N seconds (a webhook URL takes no query)
//	/convert converts custom objects (ConversionReview v1) between v1, whose
//	         spec has color, and v2, whose spec has colour
package webhookserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// MutatedLabel is the label /mutate adds; its value names the server.
const MutatedLabel = "webhook.petrel.io/mutated"

// Server is the webhook; it remembers the requests it was sent.
type Server struct {
	name string
	mu   sync.Mutex
	seen []Request
}

// Request is what a test may ask about one call.
type Request struct {
	Path        string
	Operation   string
	Resource    string
	SubResource string
	Name        string
	DryRun      bool
}

// New is a webhook that names itself name in labels and messages.
func New(name string) *Server { return &Server{name: name} }

// Requests are the calls so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.seen...)
}

// ServeHTTP answers one AdmissionReview (or ConversionReview on /convert).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/convert" {
		s.convert(w, r)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("not an AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	req := review.Request
	s.mu.Lock()
	s.seen = append(s.seen, Request{Path: r.URL.Path, Operation: string(req.Operation), Resource: req.Resource.Resource,
		SubResource: req.SubResource, Name: req.Name, DryRun: req.DryRun != nil && *req.DryRun})
	s.mu.Unlock()
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	path := strings.TrimSuffix(r.URL.Path, "/")
	if strings.HasPrefix(path, "/slow/") {
		secs, _ := strconv.Atoi(strings.TrimPrefix(path, "/slow/"))
		select {
		case <-time.After(time.Duration(secs) * time.Second):
		case <-r.Context().Done():
			return
		}
		path = "/allow"
	}
	label := MutatedLabel
	if strings.HasPrefix(path, "/label/") {
		label, path = "webhook.petrel.io/"+strings.TrimPrefix(path, "/label/"), "/mutate"
	}
	switch path {
	case "/mutate":
		patch, err := labelPatch(req.Object.Raw, label, s.name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
		resp.Warnings = []string{"mutated by " + s.name}
	case "/deny":
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
			Message: fmt.Sprintf("denied by %s: %s %s", s.name, req.Kind.Kind, req.Name)}
	case "/allow":
	default:
		http.NotFound(w, r)
		return
	}
	review.Response, review.Request = resp, nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}

// labelPatch adds the label to the object, making the labels map when the
// object has none (a JSON Patch cannot add below a missing parent).
func labelPatch(raw []byte, key, value string) ([]byte, error) {
	var obj struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("object: %w", err)
	}
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	if obj.Metadata.Labels == nil {
		return json.Marshal([]op{{"add", "/metadata/labels", map[string]string{key: value}}})
	}
	return json.Marshal([]op{{"add", "/metadata/labels/" + strings.ReplaceAll(key, "/", "~1"), value}})
}

// convert answers a ConversionReview: each object gets the desired
// apiVersion, and spec.color (v1) becomes spec.colour (v2) or back.
func (s *Server) convert(w http.ResponseWriter, r *http.Request) {
	var review apiextensionsv1.ConversionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("not a ConversionReview: %v", err), http.StatusBadRequest)
		return
	}
	req := review.Request
	s.mu.Lock()
	s.seen = append(s.seen, Request{Path: r.URL.Path, Operation: "CONVERT", Name: req.DesiredAPIVersion})
	s.mu.Unlock()
	resp := &apiextensionsv1.ConversionResponse{UID: req.UID, Result: metav1.Status{Status: metav1.StatusSuccess}}
	from, to := "colour", "color"
	if strings.HasSuffix(req.DesiredAPIVersion, "/v2") {
		from, to = "color", "colour"
	}
	for _, raw := range req.Objects {
		var obj map[string]any
		if err := json.Unmarshal(raw.Raw, &obj); err != nil {
			resp.Result = metav1.Status{Status: metav1.StatusFailure, Message: err.Error()}
			break
		}
		obj["apiVersion"] = req.DesiredAPIVersion
		if spec, ok := obj["spec"].(map[string]any); ok {
			if v, ok := spec[from]; ok {
				delete(spec, from)
				spec[to] = v
			}
		}
		out, _ := json.Marshal(obj)
		resp.ConvertedObjects = append(resp.ConvertedObjects, runtime.RawExtension{Raw: out})
	}
	review.Response, review.Request = resp, nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}
