package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/controlplane/audit"
)

// beginAudit starts the audit record of r, with the authenticated (not yet
// impersonated) user, as Kubernetes' audit filter sits between
// authentication and impersonation. It returns the writer the rest of the
// request writes through, and the request carrying the record; nil when
// the policy keeps nothing of the request.
func (s *Server) beginAudit(w http.ResponseWriter, r *http.Request) (*audit.Writer, *http.Request) {
	if s.cfg.Audit == nil {
		return nil, r
	}
	received := time.Now()
	u, _ := userFrom(r.Context())
	attrs := requestAttributes(r, u)
	req := audit.Request{
		User: audit.User{Name: u.Name, UID: u.UID, Groups: u.Groups}, Verb: attrs.Verb,
		RequestURI: r.URL.RequestURI(), Path: r.URL.Path, SourceIPs: audit.SourceIPs(r), UserAgent: r.UserAgent(),
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
	aw := audit.Wrap(w, r, rec, attrs.Verb == "watch", protobufToJSON)
	r = r.WithContext(context.WithValue(audit.WithRecord(r.Context(), rec), auditWriterKey{}, aw))
	return aw, r
}

type auditWriterKey struct{}

// protobufToJSON decodes a protobuf request body for the audit log.
func protobufToJSON(body []byte) ([]byte, error) {
	obj, _, err := Codecs.UniversalDeserializer().Decode(body, nil, nil)
	if err != nil {
		return nil, err
	}
	return json.Marshal(obj)
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

// noteStatus records the Status an error answers in the request's audit
// record, if it has one.
func noteStatus(r *http.Request, st *metav1.Status) {
	if aw, ok := r.Context().Value(auditWriterKey{}).(*audit.Writer); ok {
		aw.NoteStatus(st)
	}
}
