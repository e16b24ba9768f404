package imagepull

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
)

// Registries says how the node reaches registries: mirrors to try before
// a registry itself, registries spoken to over plain HTTP, and certificate
// authorities to trust beyond the system's.
type Registries struct {
	// Mirrors maps a registry host (docker.io, quay.io) to mirror URLs
	// (https://mirror.example.com, maybe with a path), tried in order
	// before the registry.
	Mirrors map[string][]string
	// Insecure are hosts (host:port) reached over plain HTTP.
	Insecure []string
	// CAFiles are PEM bundles of authorities trusted for every registry,
	// with the system's.
	CAFiles []string
}

// ParseMirror reads --registry-mirror's REGISTRY=URL.
func ParseMirror(s string) (registry, mirror string, err error) {
	registry, mirror, ok := strings.Cut(s, "=")
	if !ok || registry == "" || mirror == "" {
		return "", "", fmt.Errorf("registry mirror %q: want REGISTRY=URL (docker.io=https://mirror.example.com)", s)
	}
	u, err := url.Parse(mirror)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", fmt.Errorf("registry mirror %q: %q is not an http(s) URL", s, mirror)
	}
	return registry, mirror, nil
}

// Validate checks that the certificate authorities can be read, so that
// a node with a wrong --registry-ca stops at start rather than at a pull.
func (r Registries) Validate() error {
	_, err := r.client()
	return err
}

// client is the HTTP client of every pull: one connection pool for the
// node, trusting the system's authorities and the configured ones.
func (r Registries) client() (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range r.CAFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("registry CA: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("registry CA %s holds no PEM certificate", f)
		}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	t.MaxIdleConnsPerHost = 8
	return &http.Client{Transport: t, Timeout: 0}, nil
}

// hosts is containerd's view of the registries for one pull, whose
// logins come from creds.
func (r Registries) hosts(client *http.Client, creds func(host string) (string, string, error)) docker.RegistryHosts {
	insecure := map[string]bool{}
	for _, h := range r.Insecure {
		insecure[h] = true
	}
	return func(host string) ([]docker.RegistryHost, error) {
		auth := docker.NewDockerAuthorizer(docker.WithAuthClient(client), docker.WithAuthCreds(creds))
		var out []docker.RegistryHost
		for _, m := range r.Mirrors[host] {
			u, err := url.Parse(m)
			if err != nil {
				return nil, fmt.Errorf("registry mirror %s: %w", m, err)
			}
			path := strings.TrimSuffix(u.Path, "/")
			if !strings.HasSuffix(path, "/v2") {
				path += "/v2"
			}
			out = append(out, docker.RegistryHost{Client: client, Authorizer: auth, Host: u.Host, Scheme: u.Scheme, Path: path,
				Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve})
		}
		origin := host
		if host == "docker.io" {
			origin = "registry-1.docker.io"
		}
		scheme := "https"
		if insecure[host] {
			scheme = "http"
		}
		out = append(out, docker.RegistryHost{Client: client, Authorizer: auth, Host: origin, Scheme: scheme, Path: "/v2",
			Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve | docker.HostCapabilityPush})
		return out, nil
	}
}

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// pullTimeout bounds one pull, so that a registry that stops answering
// frees the pods waiting for it.
const pullTimeout = 5 * time.Minute
