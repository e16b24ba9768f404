package imagepull

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseSecret(t *testing.T) {
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	for _, tc := range []struct {
		name     string
		secret   *corev1.Secret
		want     []Credential
		wantErr  string
		lookHost string
		lookRepo string
		found    string
	}{
		{name: "dockerconfigjson with auth", secret: &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"registry.example:5000":{"auth":"` + auth + `"}}}`)}},
			want: []Credential{{Key: "registry.example:5000", Username: "alice", Password: "s3cret", Secret: "s"}}, lookHost: "registry.example:5000", found: "alice"},
		{name: "dockercfg with username and password and a URL key", secret: &corev1.Secret{Type: corev1.SecretTypeDockercfg,
			Data: map[string][]byte{corev1.DockerConfigKey: []byte(`{"https://index.docker.io/v1/":{"username":"bob","password":"pw"}}`)}},
			want: []Credential{{Key: "docker.io", Username: "bob", Password: "pw", Secret: "s"}}, lookHost: "registry-1.docker.io", found: "bob"},
		{name: "a path prefix matches by repository", secret: &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"reg.example/team":{"username":"t","password":"p"},"reg.example":{"username":"all","password":"p"}}}`)}},
			want:     []Credential{{Key: "reg.example/team", Username: "t", Password: "p", Secret: "s"}, {Key: "reg.example", Username: "all", Password: "p", Secret: "s"}},
			lookRepo: "reg.example/team/app", found: "t"},
		{name: "an opaque secret holds no logins", secret: &corev1.Secret{Type: corev1.SecretTypeOpaque}},
		{name: "bad JSON", secret: &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{`)}}, wantErr: "is not a Docker config"},
		{name: "auth not user:password", secret: &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"r":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("nocolon")) + `"}}}`)}},
			wantErr: "is not user:password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.secret.ObjectMeta = metav1.ObjectMeta{Name: "s"}
			got, err := ParseSecret(tc.secret)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if tc.found != "" {
				c, ok := Keyring(got).Lookup(tc.lookHost, tc.lookRepo)
				if !ok || c.Username != tc.found {
					t.Fatalf("lookup %q %q: %+v %v, want %s", tc.lookHost, tc.lookRepo, c, ok, tc.found)
				}
			}
		})
	}
}

// TestKeyringFingerprint: pods share a pull only with pods of the same
// logins.
func TestKeyringFingerprint(t *testing.T) {
	a := Keyring{{Key: "r", Username: "u", Password: "p1"}}
	b := Keyring{{Key: "r", Username: "u", Password: "p2"}}
	if a.fingerprint() == b.fingerprint() || a.fingerprint() != (Keyring{{Key: "r", Username: "u", Password: "p1"}}).fingerprint() {
		t.Fatal("fingerprints do not tell logins apart")
	}
	if (Keyring{}).fingerprint() == a.fingerprint() {
		t.Fatal("no login and a login share a fingerprint")
	}
}

func TestExplain(t *testing.T) {
	ref, _ := Normalize("reg.example:5000/app:v1")
	keys := Keyring{{Key: "reg.example:5000", Username: "alice", Password: "x", Secret: "regcred"}}
	for _, tc := range []struct {
		name string
		keys Keyring
		err  error
		want []string
	}{
		{"401 without a login", nil, fmt.Errorf("pull access denied: %w", docker.ErrInvalidAuthorization),
			[]string{"wants a login (401 Unauthorized)", "kubectl create secret docker-registry NAME --docker-server=reg.example:5000", "imagePullSecrets"}},
		{"401 with a login", keys, fmt.Errorf("pull access denied: %w", docker.ErrInvalidAuthorization),
			[]string{`refused the login of user "alice" from secret regcred`}},
		{"not found", nil, fmt.Errorf("reg.example:5000/app:v1: %w", errdefs.ErrNotFound), []string{"has no image", "check its name and tag"}},
		{"unknown CA", nil, errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority"), []string{"--registry-ca", "--insecure-registry reg.example:5000"}},
		{"plain HTTP", nil, errors.New("http: server gave HTTP response to HTTPS client"), []string{"--insecure-registry reg.example:5000"}},
		{"unreachable", nil, errors.New("dial tcp 127.0.0.1:5000: connect: connection refused"), []string{"cannot reach reg.example:5000", "petrelctl image import"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := explain(ref, tc.keys, tc.err)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Fatalf("message lacks %q: %s", w, msg)
				}
			}
			if !strings.Contains(msg, tc.err.Error()) {
				t.Fatalf("message drops the error itself: %s", msg)
			}
		})
	}
}

func TestParseMirror(t *testing.T) {
	if reg, url, err := ParseMirror("docker.io=https://mirror.example/v2"); err != nil || reg != "docker.io" || url != "https://mirror.example/v2" {
		t.Fatalf("got %q %q %v", reg, url, err)
	}
	for _, bad := range []string{"docker.io", "=https://m", "docker.io=mirror.example", "docker.io=ftp://m"} {
		if _, _, err := ParseMirror(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

// TestHostsOrder: mirrors are asked first, each with its own path, then
// the registry itself (Docker Hub at registry-1.docker.io), over plain HTTP
// only for an insecure registry.
func TestHostsOrder(t *testing.T) {
	r := Registries{Mirrors: map[string][]string{"docker.io": {"https://m1.example", "http://m2.example:5000/cache"}},
		Insecure: []string{"local:5000"}}
	hc, err := r.client()
	if err != nil {
		t.Fatal(err)
	}
	hosts := r.hosts(hc, func(string) (string, string, error) { return "", "", nil })
	got, err := hosts("docker.io")
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, h := range got {
		seen = append(seen, h.Scheme+"://"+h.Host+h.Path)
	}
	want := "https://m1.example/v2 http://m2.example:5000/cache/v2 https://registry-1.docker.io/v2"
	if strings.Join(seen, " ") != want {
		t.Fatalf("hosts %v, want %s", seen, want)
	}
	if got[0].Capabilities.Has(docker.HostCapabilityPush) || !got[2].Capabilities.Has(docker.HostCapabilityPush) {
		t.Fatal("mirrors must only pull; the registry may push")
	}
	local, _ := hosts("local:5000")
	if len(local) != 1 || local[0].Scheme != "http" {
		t.Fatalf("insecure registry: %+v", local)
	}
}

func TestGCPolicyValidate(t *testing.T) {
	if err := DefaultGCPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, g := range []GCPolicy{{High: 80, Low: 85}, {High: 101, Low: 0}, {High: 50, Low: -1}} {
		if g.Validate() == nil {
			t.Fatalf("%+v accepted", g)
		}
	}
}

func TestRegistriesValidate(t *testing.T) {
	if err := (Registries{CAFiles: []string{"/nonexistent/ca.pem"}}).Validate(); err == nil || !strings.Contains(err.Error(), "registry CA") {
		t.Fatalf("a missing CA file: %v", err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (Registries{CAFiles: []string{notPEM}}).Validate(); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("a file without a certificate: %v", err)
	}
	if err := (Registries{}).Validate(); err != nil {
		t.Fatal(err)
	}
}
