package jointoken

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"
)

// clusterInfoPath is the ConfigMap a joining node or server reads without
// credentials.
const clusterInfoPath = "/api/v1/namespaces/kube-public/configmaps/cluster-info"

// DiscoverCA reads cluster-info without trusting the server, checks its CA
// against the token (hash, else JWS signature), then reads it again over a
// connection verified with that CA, so that a server in the middle cannot
// answer the second time.
func DiscoverCA(ctx context.Context, server string, tok Token) ([]byte, error) {
	var cm *corev1.ConfigMap
	var err error
	for {
		//nolint:gosec // nothing from this answer is trusted before its CA is checked below
		cm, err = getClusterInfo(ctx, server, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
		if err == nil || !retryable(err) {
			break
		}
		slog.Info("join: waiting for the API server", "server", server, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reading cluster-info from %s: %w", server, err)
		case <-time.After(2 * time.Second):
		}
	}
	if err != nil {
		return nil, err
	}
	kubeconfig := cm.Data[bootstrapapi.KubeConfigKey]
	caPEM, err := ClusterInfoCA(kubeconfig)
	if err != nil {
		return nil, err
	}
	if tok.CAHash != "" {
		got, err := CAHashPEM(caPEM)
		if err != nil {
			return nil, err
		}
		if got != tok.CAHash {
			return nil, fmt.Errorf("the cluster CA served by %s has hash %s, but the token pins %s: the token is for another cluster (or something is in the middle); "+
				"compare with `openssl x509 -in <server data-dir>/pki/ca.crt -outform der | sha256sum`", server, got, tok.CAHash)
		}
	} else {
		sig, ok := cm.Data[bootstrapapi.JWSSignatureKeyPrefix+tok.ID]
		if !ok {
			return nil, fmt.Errorf("cluster-info from %s is not signed for token %q: the token is unknown or expired (or pin the CA with a K10<hash>:: token)", server, tok.ID)
		}
		if !jws.DetachedTokenIsValid(sig, kubeconfig, tok.ID, tok.Secret) {
			return nil, fmt.Errorf("cluster-info from %s has a signature for token %q that the token's secret does not verify: a wrong token, or something is in the middle", server, tok.ID)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("cluster-info's CA is not a PEM certificate")
	}
	again, err := getClusterInfo(ctx, server, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, fmt.Errorf("the API server %s does not prove it holds the cluster CA's certificate: %w", server, err)
	}
	if again.Data[bootstrapapi.KubeConfigKey] != kubeconfig {
		return nil, fmt.Errorf("cluster-info changed between two reads from %s; try again", server)
	}
	return caPEM, nil
}

// statusError is an answer other than 200 OK.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.code, e.body)
}

// retryable: the server is not up yet (connection refused, timeouts, 5xx).
func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 500 || se.code == http.StatusTooManyRequests
	}
	var cert *tls.CertificateVerificationError
	return !errors.As(err, &cert)
}

func getClusterInfo(ctx context.Context, server string, tlsConfig *tls.Config) (*corev1.ConfigMap, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: nil}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+clusterInfoPath, nil)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", server, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{code: resp.StatusCode, body: strings.TrimSpace(string(body))}
	}
	cm := &corev1.ConfigMap{}
	if err := json.Unmarshal(body, cm); err != nil {
		return nil, fmt.Errorf("cluster-info from %s: %w", server, err)
	}
	return cm, nil
}

// ClusterInfoCA is the CA of cluster-info's kubeconfig.
func ClusterInfoCA(kubeconfig string) ([]byte, error) {
	cfg, err := clientcmd.Load([]byte(kubeconfig))
	if err != nil {
		return nil, fmt.Errorf("cluster-info's kubeconfig: %w", err)
	}
	for _, c := range cfg.Clusters {
		if len(c.CertificateAuthorityData) > 0 {
			return c.CertificateAuthorityData, nil
		}
	}
	return nil, errors.New("cluster-info's kubeconfig has no certificate authority data")
}
