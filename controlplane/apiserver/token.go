package apiserver

import (
	"context"
	"net/http"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/petrel-project/petrel/controlplane/tokens"
)

// IsBootstrapToken reports whether a bearer token has the form of a
// Kubernetes bootstrap token, "<6 chars>.<16 chars>" of [a-z0-9].
func IsBootstrapToken(token string) bool {
	return bootstraputil.BootstrapTokenRegexp.MatchString(token)
}

// createToken serves serviceaccounts/<name>/token (TokenRequest), which
// the kubelet calls for projected tokens and `kubectl create token` for
// people.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request, req *request) {
	ctx, cancel := requestContext(r)
	defer cancel()
	if s.cfg.Tokens == nil {
		s.writeError(w, r, apierrors.NewServiceUnavailable("this API server issues no service account tokens"))
		return
	}
	data, err := readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, err := s.decodeBody(w, r, data, &authenticationv1.TokenRequest{}, authenticationv1.SchemeGroupVersion.WithKind("TokenRequest"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.tokenAuth.Request(ctx, req.ep.res.GVR, req.ep.store, req.namespace, req.name, obj.(*authenticationv1.TokenRequest))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, req, http.StatusCreated, out)
}

// AuthenticateToken says whether a bearer token is a bootstrap token (see
// tokenauth's BootstrapUser) or a service account token of this cluster
// whose service account (and bound pod) still exist as it names them, and
// whose it is; the error says why not.
func (s *Server) AuthenticateToken(ctx context.Context, token string) (User, error) {
	if IsBootstrapToken(token) {
		return s.tokenAuth.BootstrapUser(ctx, token)
	}
	if s.cfg.Tokens == nil {
		return User{}, tokens.ErrNotOurs
	}
	c, err := s.cfg.Tokens.Verify(token)
	if err != nil {
		return User{}, err
	}
	return s.tokenAuth.User(ctx, c)
}
