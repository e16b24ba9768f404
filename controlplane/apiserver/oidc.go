package apiserver

import (
	"encoding/json"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/petrel-project/petrel/controlplane/tokens"
)

// Service account issuer discovery: the OpenID Connect provider metadata
// and the keys of the issuer, so that anything holding a service account
// token (a cloud's identity federation, another workload) can verify it
// without asking the API server. RBAC's
// system:service-account-issuer-discovery role lets service accounts read
// them, as in Kubernetes.
const (
	oidcConfigPath = "/.well-known/openid-configuration"
	jwksPath       = "/openid/v1/jwks"
)

// oidcConfig is the provider metadata Kubernetes serves (OpenID Connect
// Discovery 1.0, the fields a relying party needs).
type oidcConfig struct {
	Issuer        string   `json:"issuer"`
	JWKSURI       string   `json:"jwks_uri"`
	ResponseTypes []string `json:"response_types_supported"`
	SubjectTypes  []string `json:"subject_types_supported"`
	SigningAlgs   []string `json:"id_token_signing_alg_values_supported"`
}

// jwksURI is where the keys are found: under the issuer, whose name
// (kubernetes.default.svc) every pod resolves and the serving certificate
// carries, so a workload reaches it through the kubernetes Service.
func jwksURI(t *tokens.Issuer) string {
	return strings.TrimSuffix(t.Name(), "/") + jwksPath
}

func (s *Server) serveOIDCConfig(w http.ResponseWriter, r *http.Request) {
	if !s.oidcReady(w, r) {
		return
	}
	b, err := json.Marshal(oidcConfig{
		Issuer: s.cfg.Tokens.Name(), JWKSURI: jwksURI(s.cfg.Tokens),
		ResponseTypes: []string{"id_token"}, SubjectTypes: []string{"public"}, SigningAlgs: []string{"ES256"},
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeCacheable(w, "application/json", b)
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if !s.oidcReady(w, r) {
		return
	}
	b, err := s.cfg.Tokens.JWKS()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeCacheable(w, "application/jwk-set+json", b)
}

// jwksResource names the documents in a 405.
var jwksResource = schema.GroupResource{Resource: "openid"}

func (s *Server) oidcReady(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.writeError(w, r, apierrors.NewMethodNotSupported(jwksResource, r.Method))
		return false
	}
	if s.cfg.Tokens == nil {
		s.notFound(w, r)
		return false
	}
	return true
}

// writeCacheable answers with a document relying parties may keep for an
// hour, as Kubernetes lets them.
func writeCacheable(w http.ResponseWriter, contentType string, b []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
