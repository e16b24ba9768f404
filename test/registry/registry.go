// Package registry runs a real image registry for tests: Debian's
// docker-registry (distribution) on 127.0.0.1, over HTTPS with a
// certificate from a CA made for the test and htpasswd basic auth, or over
// plain HTTP without a login. It pushes OCI archives into it and counts the
// requests it served from its access log.
package registry

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/log"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

// Binary is Debian's registry.
const Binary = "/usr/bin/docker-registry"

// Registry is a running docker-registry.
type Registry struct {
	// Host is 127.0.0.1:PORT, the registry part of image names.
	Host string
	// CAFile is the PEM of the CA that signed its certificate (TLS only).
	CAFile string
	// Username and Password are its one login (TLS only).
	Username, Password string
	// TLS says whether it speaks HTTPS.
	TLS bool

	logPath string
	client  *http.Client
	stop    func() error
}

// Options choose the registry's kind.
type Options struct {
	// TLS serves HTTPS with a certificate from a test CA and asks for a
	// basic-auth login; otherwise plain HTTP, no login.
	TLS bool
}

// Start runs a registry for the test on a free port; the test's cleanup
// stops it by its PID. It skips where docker-registry is not installed.
func Start(t testing.TB, port int, opts Options) *Registry {
	t.Helper()
	if err := Available(opts); err != nil {
		t.Skip(err)
	}
	r, err := Run(context.Background(), t.TempDir(), port, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("docker-registry log (end):\n%s", r.logTail())
		}
	})
	return r
}

// Available says why a registry of this kind cannot run here, or nil.
func Available(opts Options) error {
	if _, err := os.Stat(Binary); err != nil {
		return fmt.Errorf("%s is not installed (make deps installs docker-registry)", Binary)
	}
	if opts.TLS {
		if _, err := exec.LookPath("htpasswd"); err != nil {
			return fmt.Errorf("htpasswd (apache2-utils) is needed for the registry's logins: %w", err)
		}
	}
	return nil
}

// Run starts a registry on 127.0.0.1:port keeping its data, certificates
// and log in dir, and returns once it answers; Stop ends it. Benchmarks
// use it outside a test.
func Run(ctx context.Context, dir string, port int, opts Options) (_ *Registry, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	r := &Registry{Host: fmt.Sprintf("127.0.0.1:%d", port), TLS: opts.TLS, logPath: filepath.Join(dir, "registry.log")}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), r.Host)
	r.client = &http.Client{Timeout: 30 * time.Second}
	if opts.TLS {
		caPEM, certPEM, keyPEM, err := makeCerts()
		if err != nil {
			return nil, err
		}
		r.CAFile = filepath.Join(dir, "ca.pem")
		for f, b := range map[string][]byte{r.CAFile: caPEM, filepath.Join(dir, "cert.pem"): certPEM, filepath.Join(dir, "key.pem"): keyPEM} {
			if err := os.WriteFile(f, b, 0o600); err != nil {
				return nil, err
			}
		}
		r.Username, r.Password = "petrel", "pull-"+randomHex(6)
		// The registry takes bcrypt only.
		out, err := exec.CommandContext(ctx, "htpasswd", "-Bbn", r.Username, r.Password).Output()
		if err != nil {
			return nil, fmt.Errorf("htpasswd (apache2-utils) is needed for the registry's logins: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "htpasswd"), out, 0o600); err != nil {
			return nil, err
		}
		cfg += fmt.Sprintf(`  tls:
    certificate: %s
    key: %s
auth:
  htpasswd:
    realm: petrel-test
    path: %s
`, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "htpasswd"))
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		r.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(Binary, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start docker-registry: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.stop = func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		return logFile.Close()
	}
	defer func() {
		if err != nil {
			_ = r.stop()
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := r.client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			return r, nil
		}
		select {
		case <-done:
			return nil, fmt.Errorf("docker-registry exited at start:\n%s", r.logTail())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("docker-registry did not answer at %s: %w", r.URL(), err)
		}
	}
}

// Stop ends the registry (SIGTERM, then SIGKILL after 10 s).
func (r *Registry) Stop() error {
	if r.stop == nil {
		return nil
	}
	stop := r.stop
	r.stop = nil
	return stop()
}

// logTail is the end of the registry's log, for failures.
func (r *Registry) logTail() []byte {
	b, _ := os.ReadFile(r.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return b
}

// URL is the registry's base URL.
func (r *Registry) URL() string {
	if r.TLS {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// Push copies the image of an OCI archive into the registry as repo:tag.
func (r *Registry) Push(ctx context.Context, archivePath, repoTag string) error {
	return r.PushVariant(ctx, archivePath, repoTag, "")
}

// PushVariant pushes the archive's image as repo:tag, made a distinct image
// (its own config and manifest digests, the same layers) by the label
// petrel.test/variant=variant when variant is not empty.
func (r *Registry) PushVariant(ctx context.Context, archivePath, repoTag, variant string) error {
	if variant == "" {
		return r.push(ctx, archivePath, repoTag, nil)
	}
	return r.push(ctx, archivePath, repoTag, func(ctx context.Context, store content.Store, desc ocispec.Descriptor) (ocispec.Descriptor, error) {
		return editImage(ctx, store, desc, func(_ *ocispec.Manifest, cfg *ocispec.Image) error {
			if cfg.Config.Labels == nil {
				cfg.Config.Labels = map[string]string{}
			}
			cfg.Config.Labels["petrel.test/variant"] = variant
			return nil
		})
	})
}

// PushPadded pushes the archive's image as repo:tag with one more layer: a
// file /petrel-pad of padBytes random bytes. Random bytes do not compress,
// so the image is that much bigger on the wire, and no other image shares
// the layer: each pull of it is a whole pull.
func (r *Registry) PushPadded(ctx context.Context, archivePath, repoTag string, padBytes int64) error {
	return r.push(ctx, archivePath, repoTag, func(ctx context.Context, store content.Store, desc ocispec.Descriptor) (ocispec.Descriptor, error) {
		layer, diffID, err := padLayer(ctx, store, padBytes)
		if err != nil {
			return desc, err
		}
		return editImage(ctx, store, desc, func(m *ocispec.Manifest, cfg *ocispec.Image) error {
			m.Layers = append(m.Layers, layer)
			cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
			return nil
		})
	})
}

// push copies the archive's image, changed by edit when not nil, into the
// registry as repo:tag.
func (r *Registry) push(ctx context.Context, archivePath, repoTag string, edit func(context.Context, content.Store, ocispec.Descriptor) (ocispec.Descriptor, error)) error {
	// The content store warns on every open where fs-verity is missing.
	ctx = log.WithLogger(ctx, log.L.WithField("test", "registry"))
	log.L.Logger.SetLevel(logrus.ErrorLevel)
	store, err := local.NewStore(filepath.Join(filepath.Dir(r.logPath), "push-content"))
	if err != nil {
		return err
	}
	f, err := os.Open(archivePath)
	if err != nil {
		return err
	}
	defer f.Close()
	idxDesc, err := archive.ImportIndex(ctx, store, f)
	if err != nil {
		return fmt.Errorf("read %s: %w", archivePath, err)
	}
	b, err := content.ReadBlob(ctx, store, idxDesc)
	if err != nil {
		return err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil || len(idx.Manifests) == 0 {
		return fmt.Errorf("%s has no image: %v", archivePath, err)
	}
	desc := idx.Manifests[0]
	desc.Annotations = nil
	if edit != nil {
		if desc, err = edit(ctx, store, desc); err != nil {
			return err
		}
	}
	ref := r.Host + "/" + repoTag
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
		docker.WithClient(r.client),
		docker.WithPlainHTTP(func(string) (bool, error) { return !r.TLS, nil }),
		docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthClient(r.client),
			docker.WithAuthCreds(func(string) (string, string, error) { return r.Username, r.Password, nil }))))})
	pusher, err := resolver.Pusher(ctx, ref)
	if err != nil {
		return err
	}
	if err := remotes.PushContent(ctx, pusher, desc, store, nil, platforms.All, nil); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// accessLine is the access log's combined log format line of a request.
var accessLine = regexp.MustCompile(`"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/[0-9.]+" (\d{3}) `)

// Requests counts the requests the registry answered with status whose
// method is method and whose path (query dropped) starts with prefix.
func (r *Registry) Requests(method, prefix string, status int) int {
	f, err := os.Open(r.logPath)
	if err != nil {
		return -1
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		m := accessLine.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != method || m[3] != fmt.Sprint(status) {
			continue
		}
		path, _, _ := strings.Cut(m[2], "?")
		if strings.HasPrefix(path, prefix) {
			n++
		}
	}
	return n
}

// makeCerts makes a CA and a serving certificate for 127.0.0.1 signed by it.
func makeCerts() (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "petrel test registry CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// editImage writes a copy of the image whose manifest and config edit
// changed, and returns its manifest's descriptor.
func editImage(ctx context.Context, store content.Store, desc ocispec.Descriptor, edit func(*ocispec.Manifest, *ocispec.Image) error) (ocispec.Descriptor, error) {
	b, err := content.ReadBlob(ctx, store, desc)
	if err != nil {
		return desc, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return desc, err
	}
	cb, err := content.ReadBlob(ctx, store, m.Config)
	if err != nil {
		return desc, err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return desc, err
	}
	if err := edit(&m, &cfg); err != nil {
		return desc, err
	}
	if m.Config, err = writeJSONBlob(ctx, store, cfg, m.Config.MediaType); err != nil {
		return desc, err
	}
	return writeJSONBlob(ctx, store, m, desc.MediaType)
}

// writeJSONBlob stores v as JSON under its digest.
func writeJSONBlob(ctx context.Context, store content.Store, v any, mediaType string) (ocispec.Descriptor, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	return d, content.WriteBlob(ctx, store, d.Digest.String(), bytes.NewReader(raw), d)
}

// padLayer stores a gzipped tar layer holding /petrel-pad, size random
// bytes, and returns its descriptor and its diff ID (the digest of the
// uncompressed tar, which the image config lists).
func padLayer(ctx context.Context, store content.Store, size int64) (ocispec.Descriptor, digest.Digest, error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	if err := tw.WriteHeader(&tar.Header{Name: "petrel-pad", Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if _, err := io.CopyN(tw, rand.Reader, size); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if err := tw.Close(); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	diffID := digest.FromBytes(tarBuf.Bytes())
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if err := zw.Close(); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(gz.Bytes()), Size: int64(gz.Len())}
	return d, diffID, content.WriteBlob(ctx, store, d.Digest.String(), bytes.NewReader(gz.Bytes()), d)
}
