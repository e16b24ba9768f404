package imagepull

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Credential is one registry login from a pull secret.
type Credential struct {
	// Key is what the secret names: a registry host, maybe with a path
	// prefix ("registry.example.com/team"), normalised (no scheme, Docker
	// Hub as docker.io).
	Key      string
	Username string
	Password string
	// Secret names the Secret it came from, for messages.
	Secret string
}

// dockerEntry is one registry's login in a .dockerconfigjson or .dockercfg.
type dockerEntry struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Auth     string `json:"auth"`
}

// ParseSecret reads the logins of a kubernetes.io/dockerconfigjson or
// kubernetes.io/dockercfg Secret; other types hold none.
func ParseSecret(s *corev1.Secret) ([]Credential, error) {
	var entries map[string]dockerEntry
	switch s.Type {
	case corev1.SecretTypeDockerConfigJson:
		var cfg struct {
			Auths map[string]dockerEntry `json:"auths"`
		}
		if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
			return nil, fmt.Errorf("secret %s: %s is not a Docker config: %w", s.Name, corev1.DockerConfigJsonKey, err)
		}
		entries = cfg.Auths
	case corev1.SecretTypeDockercfg:
		if err := json.Unmarshal(s.Data[corev1.DockerConfigKey], &entries); err != nil {
			return nil, fmt.Errorf("secret %s: %s is not a Docker config: %w", s.Name, corev1.DockerConfigKey, err)
		}
	default:
		return nil, nil
	}
	out := make([]Credential, 0, len(entries))
	for key, e := range entries {
		user, pass := e.Username, e.Password
		if e.Auth != "" {
			b, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("secret %s: the auth of %s is not base64: %w", s.Name, key, err)
			}
			u, p, ok := strings.Cut(string(b), ":")
			if !ok {
				return nil, fmt.Errorf("secret %s: the auth of %s is not user:password", s.Name, key)
			}
			user, pass = u, p
		}
		out = append(out, Credential{Key: normalizeKey(key), Username: user, Password: pass, Secret: s.Name})
	}
	// Longest key first: the most specific login wins, as the kubelet's
	// keyring orders them.
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].Key) > len(out[j].Key) })
	return out, nil
}

// normalizeKey turns a config key ("https://index.docker.io/v1/",
// "http://host:5000", "host/path/") into host[/path].
func normalizeKey(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	key = strings.TrimSuffix(key, "/")
	switch {
	case key == "index.docker.io/v1" || key == "index.docker.io" || key == "registry-1.docker.io":
		return "docker.io"
	case strings.HasSuffix(key, "/v1") || strings.HasSuffix(key, "/v2"):
		return strings.TrimSuffix(strings.TrimSuffix(key, "/v1"), "/v2")
	}
	return key
}

// Keyring is the logins a pod's pull may use.
type Keyring []Credential

// Lookup finds the login for host (the registry or mirror being asked)
// and repository (the image's name without its tag, as host/path).
func (k Keyring) Lookup(host, repository string) (Credential, bool) {
	if host == "registry-1.docker.io" {
		host = "docker.io"
	}
	for _, c := range k {
		if c.Key == host || strings.HasPrefix(repository+"/", c.Key+"/") {
			return c, true
		}
	}
	return Credential{}, false
}

// fingerprint tells keyrings apart without holding their secrets: pulls
// are shared only by pods that would use the same logins.
func (k Keyring) fingerprint() string {
	var b strings.Builder
	for _, c := range k {
		fmt.Fprintf(&b, "%s\x00%s\x00%d\x00", c.Key, c.Username, len(c.Password))
		b.WriteString(c.Password)
	}
	return hash(b.String())
}
