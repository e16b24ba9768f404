package tokenauth

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
	OIDCConfigPath = "/.well-known/openid-configuration"
	JWKSPath       = "/openid/v1/jwks"
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
	return strings.TrimSuffix(t.Name(), "/") + JWKSPath
}

// Discovery serves OIDCConfigPath and JWKSPath.
type Discovery struct {
	// Tokens is the issuer; nil: no tokens are issued and both paths are
	// not found.
	Tokens *tokens.Issuer
	// WriteError and NotFound answer as the rest of the API.
	WriteError func(http.ResponseWriter, *http.Request, error)
	NotFound   func(http.ResponseWriter, *http.Request)
}

// ServeConfig serves the provider metadata.
func (d *Discovery) ServeConfig(w http.ResponseWriter, r *http.Request) {
	if !d.oidcReady(w, r) {
		return
	}
	b, err := json.Marshal(oidcConfig{
		Issuer: d.Tokens.Name(), JWKSURI: jwksURI(d.Tokens),
		ResponseTypes: []string{"id_token"}, SubjectTypes: []string{"public"}, SigningAlgs: []string{"ES256"},
	})
	if err != nil {
		d.WriteError(w, r, err)
		return
	}
	writeCacheable(w, "application/json", b)
}

// ServeJWKS serves the issuer's keys.
func (d *Discovery) ServeJWKS(w http.ResponseWriter, r *http.Request) {
	if !d.oidcReady(w, r) {
		return
	}
	b, err := d.Tokens.JWKS()
	if err != nil {
		d.WriteError(w, r, err)
		return
	}
	writeCacheable(w, "application/jwk-set+json", b)
}

// jwksResource names the documents in a 405.
var jwksResource = schema.GroupResource{Resource: "openid"}

func (d *Discovery) oidcReady(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		d.WriteError(w, r, apierrors.NewMethodNotSupported(jwksResource, r.Method))
		return false
	}
	if d.Tokens == nil {
		d.NotFound(w, r)
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
