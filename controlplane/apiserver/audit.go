package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/petrel-project/petrel/controlplane/audit"
)

// maxAuditedResponse bounds the response body kept for a RequestResponse
// event; a larger one (a big list) is logged without its object.
const maxAuditedResponse = 4 << 20

// beginAudit starts the audit record of r, with the authenticated (not yet
// impersonated) user, as Kubernetes' audit filter sits between
// authentication and impersonation. It returns the writer the rest of the
// request writes through, and the request carrying the record; nil when
// the policy keeps nothing of the request.
func (s *Server) beginAudit(w http.ResponseWriter, r *http.Request) (*auditWriter, *http.Request) {
	if s.cfg.Audit == nil {
		return nil, r
	}
	received := time.Now()
	u, _ := userFrom(r.Context())
	attrs := requestAttributes(r, u)
	req := audit.Request{
		User: audit.User{Name: u.Name, UID: u.UID, Groups: u.Groups}, Verb: attrs.Verb,
		RequestURI: r.URL.RequestURI(), Path: r.URL.Path, SourceIPs: sourceIPs(r), UserAgent: r.UserAgent(),
		ResourceRequest: attrs.ResourceRequest, APIGroup: attrs.APIGroup, Resource: attrs.Resource,
		Subresource: attrs.Subresource, Namespace: attrs.Namespace, Name: attrs.Name,
	}
	if attrs.ResourceRequest {
		req.APIVersion = apiVersionOf(r.URL.Path)
	}
	rec := s.cfg.Audit.Begin(req, r.Header.Get("Audit-ID"), received)
	if rec == nil {
		return nil, r
	}
	aw := &auditWriter{ResponseWriter: w, rec: rec, long: attrs.Verb == "watch"}
	if rec.WantsRequest() && r.Body != nil && r.Body != http.NoBody {
		aw.reqBody = &bytes.Buffer{}
		aw.reqType = r.Header.Get("Content-Type")
		r.Body = teeBody{ReadCloser: r.Body, copy: aw.reqBody}
	}
	if rec.WantsResponse() && !aw.long {
		aw.respBody = &bytes.Buffer{}
	}
	r = r.WithContext(withAuditWriter(audit.WithRecord(r.Context(), rec), aw))
	return aw, r
}

// apiVersionOf is the version of an /api or /apis path.
func apiVersionOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case parts[0] == "api" && len(parts) > 1:
		return parts[1]
	case parts[0] == "apis" && len(parts) > 2:
		return parts[2]
	}
	return ""
}

// sourceIPs are the client's address and, before it, what proxies in
// X-Forwarded-For say, as Kubernetes records them.
func sourceIPs(r *http.Request) []string {
	var ips []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		for _, ip := range strings.Split(h, ",") {
			if ip = strings.TrimSpace(ip); net.ParseIP(ip) != nil {
				ips = append(ips, ip)
			}
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		ips = append(ips, host)
	}
	return ips
}

// auditWriter notes what a request answers for its audit record.
type auditWriter struct {
	http.ResponseWriter
	rec         *audit.Record
	long        bool
	code        int
	wroteHeader bool
	hijacked    bool
	status      *metav1.Status
	reqBody     *bytes.Buffer
	reqType     string
	respBody    *bytes.Buffer
	respOver    bool
}

type auditWriterKey struct{}

func withAuditWriter(ctx context.Context, aw *auditWriter) context.Context {
	return context.WithValue(ctx, auditWriterKey{}, aw)
}

func (w *auditWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.wroteHeader, w.code = true, code
		if w.long {
			w.rec.ResponseStarted(code)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *auditWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.respBody != nil && !w.respOver {
		if w.respBody.Len()+len(p) > maxAuditedResponse {
			w.respOver, w.respBody = true, nil
		} else {
			w.respBody.Write(p)
		}
	}
	return w.ResponseWriter.Write(p)
}

// Flush keeps watches streaming through the wrapper.
func (w *auditWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands the connection to an upgrade (exec, port-forward).
func (w *auditWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the connection cannot be taken over")
	}
	w.hijacked = true
	if !w.wroteHeader {
		w.wroteHeader, w.code = true, http.StatusSwitchingProtocols
	}
	return h.Hijack()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *auditWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish emits the record's last stage.
func (w *auditWriter) finish(panicked bool) {
	if w == nil {
		return
	}
	code := w.code
	if !w.wroteHeader {
		code = http.StatusOK
	}
	if panicked {
		code = http.StatusInternalServerError
	}
	if w.reqBody != nil {
		if js := auditJSON(w.reqType, w.reqBody.Bytes()); js != nil {
			w.rec.SetRequestObject(js)
		}
	}
	var resp []byte
	if w.respBody != nil && isJSON(w.Header().Get("Content-Type")) && json.Valid(w.respBody.Bytes()) {
		resp = bytes.TrimSpace(w.respBody.Bytes())
	}
	if w.respOver {
		w.rec.Annotate("audit.petrel.io/response-object", "omitted: larger than 4 MiB")
	}
	w.rec.Finish(code, w.status, resp, panicked)
}

// noteStatus records the Status an error answers, for the event's
// responseStatus (message and reason, not only the code).
func noteStatus(r *http.Request, st *metav1.Status) {
	if aw, ok := r.Context().Value(auditWriterKey{}).(*auditWriter); ok {
		cp := *st
		cp.TypeMeta = metav1.TypeMeta{}
		aw.status = &cp
	}
}

// auditJSON turns a request body into the JSON an event holds: JSON and
// patches as sent, YAML converted, protobuf decoded; nil when it cannot be
// (the event then has no request object).
func auditJSON(contentType string, body []byte) []byte {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "" || isJSON(mt):
		if json.Valid(body) {
			return body
		}
	case strings.Contains(mt, "yaml"):
		if js, err := yaml.YAMLToJSON(body); err == nil && json.Valid(js) {
			return js
		}
	case mt == runtime.ContentTypeProtobuf:
		obj, _, err := Codecs.UniversalDeserializer().Decode(body, nil, nil)
		if err != nil {
			return nil
		}
		if js, err := json.Marshal(obj); err == nil {
			return js
		}
	}
	return nil
}

func isJSON(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// teeBody copies what the handler reads of a request body.
type teeBody struct {
	io.ReadCloser
	copy *bytes.Buffer
}

func (t teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if n > 0 && t.copy.Len() < MaxRequestBodyBytes {
		t.copy.Write(p[:n])
	}
	return n, err
}
