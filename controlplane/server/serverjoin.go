package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/controlplane/apiserver"
	"github.com/petrel-project/petrel/controlplane/encryption"
	"github.com/petrel-project/petrel/controlplane/etcd"
	"github.com/petrel-project/petrel/jointoken"
)

// One identity per cluster: the first server (--cluster-init, the default)
// makes the CA, the service-account signing key and the etcd CA; every
// other server joins (--join URL --token T) and receives them over TLS
// checked against the CA hash in its token, from an endpoint only holders of
// a server token (or system:masters) may call. A server never makes its own
// once the cluster has one: etcd records the cluster's CA certificate, and a
// server whose data dir holds another refuses to start.
const (
	// ServerTokenFile is where a server keeps the token other servers join
	// with: `petrel server --join https://A:6443 --token "$(cat <data-dir>/server-token)"`.
	ServerTokenFile = "server-token"
	// ServerGroup is the extra group of server tokens: a bootstrap token
	// (so it may join nodes too) that may also fetch the cluster's keys.
	ServerGroup = "system:bootstrappers:petrel:servers"
	// serverJoinPath is the endpoint a joining server fetches the identity from.
	serverJoinPath = "/petrel/v1/server-join"
	// identityKey holds the cluster CA's certificate in etcd (public data),
	// so that a server with another CA notices before it serves.
	identityKey = "/petrel/cluster/ca.crt"
	// memberNameFile keeps the embedded etcd member name of a server that
	// joined (the first server's member is etcd.DefaultMemberName).
	memberNameFile = "etcd-member-name"
	// mastersGroup may do everything, fetching the identity included.
	mastersGroup = "system:masters"
)

// identityFiles are the keys a joining server receives, relative to the
// data dir. The etcd CA is sent when the cluster's etcd is the servers' own,
// the encryption configuration when the server made it (an operator's own
// file is theirs to give every server).
var identityFiles = []string{
	"pki/ca.crt", "pki/ca.key", // the cluster CA: client and serving certificates
	"pki/sa.key",                         // service account tokens
	"pki/etcd/ca.crt", "pki/etcd/ca.key", // the embedded etcd's CA: member certificates
	"pki/front-proxy/ca.crt", "pki/front-proxy/ca.key", // the front-proxy CA: aggregated servers trust it
	encryption.DefaultFile, // encryption at rest keys
}

// joinRequest is what a joining server asks for.
type joinRequest struct {
	// Name and EtcdPeerURL of the embedded member to add; empty when the
	// joining server uses an external etcd.
	Name        string `json:"name,omitempty"`
	EtcdPeerURL string `json:"etcdPeerURL,omitempty"`
}

// joinResponse carries the cluster's identity.
type joinResponse struct {
	// Files by path relative to the data dir (base64 in JSON).
	Files map[string][]byte `json:"files"`
	// InitialCluster is what the new embedded member starts with.
	InitialCluster string `json:"initialCluster,omitempty"`
}

// serveJoin hands the cluster's identity to a joining server, and adds its
// embedded member to etcd. Only system:masters and server tokens may.
func (s *Server) serveJoin(w http.ResponseWriter, r *http.Request) {
	u, _ := apiserver.UserFrom(r.Context())
	if !slices.Contains(u.Groups, ServerGroup) && !slices.Contains(u.Groups, mastersGroup) {
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf("user %q may not join servers: use a server's <data-dir>/%s (a bootstrap token in group %s), not a node token", u.Name, ServerTokenFile, ServerGroup))
		return
	}
	if r.Method != http.MethodPost {
		writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "POST a join request")
		return
	}
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "join request: "+err.Error())
		return
	}
	resp := joinResponse{Files: map[string][]byte{}}
	for _, f := range identityFiles {
		data, err := os.ReadFile(filepath.Join(s.opts.DataDir, f))
		if errors.Is(err, os.ErrNotExist) && (strings.HasPrefix(f, "pki/etcd/") || strings.HasPrefix(f, "pki/front-proxy/") || f == encryption.DefaultFile) {
			continue // an external etcd, encryption the operator configures, a server from before the front-proxy CA
		}
		if err != nil {
			slog.Error("server join: reading the identity", "file", f, "err", err)
			writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, "reading "+f+" on this server: "+err.Error())
			return
		}
		resp.Files[f] = data
	}
	switch {
	case req.EtcdPeerURL != "":
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		initial, err := s.backend.AddMember(ctx, req.Name, req.EtcdPeerURL)
		if err != nil {
			// Often etcd's "unhealthy cluster" while another new member
			// starts: the joining server asks again.
			writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "adding the etcd member: "+err.Error())
			return
		}
		resp.InitialCluster = initial
	case s.backend.Embedded():
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest,
			"this cluster's etcd is the servers' embedded one: a joining server runs a member too (no --etcd-endpoints)")
		return
	}
	slog.Info("server join: handing over the cluster identity", "user", u.Name, "member", req.Name, "peer", req.EtcdPeerURL)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// writeStatus answers with a metav1.Status, as the API does.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	b, _ := json.Marshal(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: msg, Reason: reason, Code: int32(code)})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// joinTimeout bounds a join: the first server may still be starting.
var joinTimeout = 2 * time.Minute

// joinCluster makes this data dir a server of the cluster at opts.Join:
// it checks the cluster's CA against the token's hash, fetches the identity
// with the token and writes it here, and has its embedded member added. It
// returns the member's name and initial cluster (empty when the member
// exists already, on a restart). A data dir whose CA is another cluster's is
// refused.
func joinCluster(ctx context.Context, opts Options) (name, initialCluster string, err error) {
	tok, err := jointoken.Parse(opts.Token)
	if err != nil {
		return "", "", fmt.Errorf("--token: %w", err)
	}
	if tok.CAHash == "" {
		return "", "", fmt.Errorf("--token: a server receives the cluster's keys, so its token must pin the CA: K10<ca-hash>::<id>.<secret>, as in <data-dir>/%s", ServerTokenFile)
	}
	have, err := localCAHash(opts.DataDir)
	if err != nil {
		return "", "", err
	}
	if have != "" && have != tok.CAHash {
		return "", "", fmt.Errorf("the data dir %s holds the CA of another cluster (hash %s), but the token joins the cluster whose CA hash is %s: "+
			"give a fresh --data-dir (or this data dir's own cluster's token)", opts.DataDir, have, tok.CAHash)
	}
	if name, err = etcdMemberName(opts); err != nil {
		return "", "", err
	}
	embedded := len(opts.EtcdEndpoints) == 0
	member := filepath.Join(opts.DataDir, "etcd", "member")
	if _, err := os.Stat(member); have != "" && (!embedded || err == nil) {
		slog.Info("server join: the data dir is a server of the cluster already", "ca-hash", have)
		return name, "", nil
	}
	jctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	caPEM, err := jointoken.DiscoverCA(jctx, opts.Join, tok)
	if err != nil {
		return "", "", err
	}
	req := joinRequest{}
	if embedded {
		req.Name, req.EtcdPeerURL = name, opts.EtcdPeerURL
		if req.EtcdPeerURL == "" {
			req.EtcdPeerURL = etcd.DefaultPeerURL
		}
	}
	resp, err := requestJoin(jctx, opts.Join, caPEM, tok.Bootstrap(), req)
	if err != nil {
		return "", "", err
	}
	if got, err := jointoken.CAHashPEM(resp.Files["pki/ca.crt"]); err != nil || got != tok.CAHash {
		return "", "", fmt.Errorf("%s sent a CA (hash %q) that is not the token's (%s): %v", opts.Join, got, tok.CAHash, err)
	}
	if embedded && (resp.InitialCluster == "" || len(resp.Files["pki/etcd/ca.key"]) == 0) {
		return "", "", fmt.Errorf("%s uses an external etcd: give the same --etcd-endpoints (and --etcd-cafile/--etcd-certfile/--etcd-keyfile)", opts.Join)
	}
	if err := writeIdentity(opts.DataDir, resp.Files); err != nil {
		return "", "", err
	}
	// Kept for the next join through this server.
	if err := writeTokenIfAbsent(filepath.Join(opts.DataDir, ServerTokenFile), tok); err != nil {
		return "", "", err
	}
	slog.Info("server join: received the cluster identity", "server", opts.Join, "ca-hash", tok.CAHash, "etcd-initial-cluster", resp.InitialCluster)
	return name, resp.InitialCluster, nil
}

// requestJoin posts the join request until the server answers, or something
// other than "not now" (a server starting, etcd busy adding another member).
func requestJoin(ctx context.Context, server string, caPEM []byte, bearer string, req joinRequest) (*joinResponse, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the cluster CA is not PEM")
	}
	client := &http.Client{Timeout: 45 * time.Second, Transport: &http.Transport{Proxy: nil,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	for {
		resp, retry, err := postJoin(ctx, client, strings.TrimSuffix(server, "/")+serverJoinPath, bearer, body)
		if err == nil {
			return resp, nil
		}
		if !retry {
			return nil, err
		}
		slog.Info("server join: waiting for the cluster", "server", server, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("joining through %s: %w", server, err)
		case <-time.After(2 * time.Second):
		}
	}
}

func postJoin(ctx context.Context, client *http.Client, url, bearer string, body []byte) (*joinResponse, bool, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, false, fmt.Errorf("--join: %w", err)
	}
	hreq.Header.Set("Authorization", "Bearer "+bearer)
	hreq.Header.Set("Content-Type", "application/json")
	hresp, err := client.Do(hreq)
	if err != nil {
		return nil, true, err
	}
	defer hresp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hresp.Body, 1<<20))
	if err != nil {
		return nil, true, err
	}
	if hresp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(data))
		var st metav1.Status
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			msg = st.Message
		}
		return nil, hresp.StatusCode >= 500 || hresp.StatusCode == http.StatusTooManyRequests,
			fmt.Errorf("joining through %s: HTTP %d: %s", url, hresp.StatusCode, msg)
	}
	var resp joinResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, false, fmt.Errorf("join answer from %s: %w", url, err)
	}
	return &resp, false, nil
}

// writeIdentity writes the received keys (0600, each through a rename).
func writeIdentity(dataDir string, files map[string][]byte) error {
	for rel, data := range files {
		if !slices.Contains(identityFiles, rel) {
			return fmt.Errorf("the join answer holds %q, which is not part of a cluster's identity", rel)
		}
		path := filepath.Join(dataDir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return nil
}

// etcdMemberName is the embedded member's name: the one a joined server
// recorded, a new one for a server that joins now, else the first
// server's.
func etcdMemberName(opts Options) (string, error) {
	path := filepath.Join(opts.DataDir, memberNameFile)
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if opts.Join == "" || len(opts.EtcdEndpoints) > 0 {
		return "", nil
	}
	peer := opts.EtcdPeerURL
	if peer == "" {
		peer = etcd.DefaultPeerURL
	}
	host, _ := os.Hostname()
	name, err := etcd.MemberName(host, peer)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return name, nil
}

// localCAHash is the hash of the data dir's CA, or "" when it has none.
func localCAHash(dataDir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	h, err := jointoken.CAHashPEM(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", filepath.Join(dataDir, "pki", "ca.crt"), err)
	}
	return h, nil
}

// checkIdentity makes sure the data dir's CA is the cluster's, before the
// server makes or uses one: etcd records the first server's CA
// certificate; a data dir with another CA, or with none on an etcd that has
// one (a second server that did not join), is refused. create makes the CA
// of a new cluster (the first server, or a data dir from before the record).
func checkIdentity(ctx context.Context, cli *clientv3.Client, dataDir string, endpoints []string, create func() ([]byte, error)) error {
	have, err := localCAHash(dataDir)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		resp, err := cli.Get(cctx, identityKey)
		if err != nil {
			return fmt.Errorf("reading the cluster's CA from etcd: %w", err)
		}
		if len(resp.Kvs) > 0 {
			want, err := jointoken.CAHashPEM(resp.Kvs[0].Value)
			if err != nil {
				return fmt.Errorf("the cluster CA recorded in etcd (%s): %w", identityKey, err)
			}
			switch have {
			case want:
				return nil
			case "":
				return fmt.Errorf("etcd %v holds a cluster already (CA hash %s), and %s has no CA: a second server joins it, with "+
					"--join https://SERVER:6443 --token \"$(cat <its data-dir>/%s)\", instead of making a CA of its own",
					strings.Join(endpoints, ","), want, dataDir, ServerTokenFile)
			default:
				return fmt.Errorf("the CA in %s (hash %s) is not the cluster's (hash %s, recorded in etcd %v): this data dir belongs to another cluster; "+
					"start with the cluster's own data dir, or join with a fresh one", filepath.Join(dataDir, "pki"), have, want, strings.Join(endpoints, ","))
			}
		}
		caPEM, err := create()
		if err != nil {
			return err
		}
		if have, err = jointoken.CAHashPEM(caPEM); err != nil {
			return err
		}
		// Only the first writer records its CA; a server that lost the race
		// reads the winner's above and is refused.
		if _, err := cli.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(identityKey), "=", 0)).
			Then(clientv3.OpPut(identityKey, string(caPEM))).Commit(); err != nil {
			return fmt.Errorf("recording the cluster's CA in etcd: %w", err)
		}
	}
}

// writeTokenIfAbsent keeps tok at path unless a token is there already.
func writeTokenIfAbsent(path string, tok jointoken.Token) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return writeNodeToken(path, tok)
}
