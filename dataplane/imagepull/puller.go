// Package imagepull gets the images of a node's pods: imagePullPolicy
// (Always, IfNotPresent, Never), logins from the pods' imagePullSecrets
// (kubernetes.io/dockerconfigjson and dockercfg), registries over HTTPS or
// plain HTTP, mirrors, one pull per image at a time shared by every pod
// that waits for it, the kubelet's Pulling/Pulled/Failed events, errors
// that say what to do, and image garbage collection by disk usage.
package imagepull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/distribution/reference"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/petrel-project/petrel/dataplane/runtime"
)

// ErrNotPresent says the image is not on the node and the pull policy
// (Never) forbids pulling it.
var ErrNotPresent = runtime.ErrImageNotPresent

// Snapshotter unpacks pulled layers: the one containers are made with.
const Snapshotter = runtime.Snapshotter

// SecretGetter reads a pod's pull secret from the API.
type SecretGetter func(ctx context.Context, namespace, name string) (*corev1.Secret, error)

// Puller gets images for the kubelet.
type Puller struct {
	client   *containerd.Client
	regs     Registries
	http     *http.Client
	secrets  SecretGetter
	recorder record.EventRecorder
	flight   singleflight.Group

	mu sync.Mutex
	// lastUsed is when a container last started from an image (by
	// name), which image GC keeps recent images by.
	lastUsed map[string]time.Time
}

// New makes a Puller for the node's containerd.
func New(client *containerd.Client, regs Registries, secrets SecretGetter, recorder record.EventRecorder) (*Puller, error) {
	hc, err := regs.client()
	if err != nil {
		return nil, err
	}
	return &Puller{client: client, regs: regs, http: hc, secrets: secrets, recorder: recorder, lastUsed: map[string]time.Time{}}, nil
}

// Normalize turns a Kubernetes image reference into containerd's full
// name (busybox → docker.io/library/busybox:latest).
func Normalize(image string) (reference.Named, error) {
	ref, err := reference.ParseDockerRef(image)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", image, err)
	}
	return ref, nil
}

// Ensure returns the image of container c of pod, pulling it as its
// imagePullPolicy says, with the pod's pull secrets.
func (p *Puller) Ensure(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (containerd.Image, error) {
	ref, err := Normalize(c.Image)
	if err != nil {
		return nil, err
	}
	name := ref.String()
	policy := c.ImagePullPolicy
	if policy == "" {
		// The API defaults it; a pod made some other way gets the same.
		policy = corev1.PullIfNotPresent
		if _, tagged := ref.(reference.Tagged); strings.HasSuffix(name, ":latest") || !tagged {
			policy = corev1.PullAlways
		}
	}
	if policy != corev1.PullAlways {
		img, err := p.client.GetImage(ctx, name)
		if err == nil {
			// containerd records the image before it unpacks it: one
			// found mid-pull is waited for with the pull.
			if ok, uerr := img.IsUnpacked(ctx, Snapshotter); uerr != nil || !ok {
				err = fmt.Errorf("image %s is not unpacked yet: %w", name, errdefs.ErrNotFound)
			}
		}
		switch {
		case err == nil:
			p.used(name)
			p.recorder.Eventf(pod, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.Image)
			return img, nil
		case !errdefs.IsNotFound(err):
			return nil, fmt.Errorf("look up image %s: %w", name, err)
		case policy == corev1.PullNever:
			return nil, fmt.Errorf("%w: %s (pull policy Never: load it with `petrelctl image import FILE.tar`, or use IfNotPresent)", ErrNotPresent, name)
		}
	}
	keys, err := p.keyring(ctx, pod)
	if err != nil {
		return nil, err
	}
	p.recorder.Eventf(pod, corev1.EventTypeNormal, "Pulling", "Pulling image %q", c.Image)
	start := time.Now()
	res, err, _ := p.flight.Do(name+"\x00"+keys.fingerprint(), func() (any, error) {
		if policy != corev1.PullAlways {
			// A pull that ended between this pod's look and its joining
			// the flight left the image here: not pulled twice.
			if img, ok := p.present(ctx, name); ok {
				return pulled{img: img, present: true}, nil
			}
		}
		return p.pull(context.WithoutCancel(ctx), ref, keys)
	})
	if err != nil {
		msg := explain(ref, keys, err)
		p.recorder.Eventf(pod, corev1.EventTypeWarning, "Failed", "Failed to pull image %q: %s", c.Image, msg)
		return nil, errors.New(msg)
	}
	pr := res.(pulled)
	p.used(name)
	if pr.present {
		p.recorder.Eventf(pod, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.Image)
		return pr.img, nil
	}
	p.recorder.Eventf(pod, corev1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %s (%s including waiting). Image size: %d bytes.",
		c.Image, pr.took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), pr.size)
	return pr.img, nil
}

// pulled is one pull's result, shared by every pod that waited for it.
type pulled struct {
	img  containerd.Image
	size int64
	took time.Duration
	// present says the image was found, not pulled.
	present bool
}

// present finds the image unpacked in containerd.
func (p *Puller) present(ctx context.Context, name string) (containerd.Image, bool) {
	img, err := p.client.GetImage(ctx, name)
	if err != nil {
		return nil, false
	}
	ok, err := img.IsUnpacked(ctx, Snapshotter)
	return img, err == nil && ok
}

// pull fetches and unpacks the image; the caller's cancellation does not
// end it, since other pods may be waiting for the same pull.
func (p *Puller) pull(ctx context.Context, ref reference.Named, keys Keyring) (pulled, error) {
	ctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	// The resolver logs each host it fails to reach; the error says it.
	ctx = log.WithLogger(ctx, quietLog)
	repo := ref.Name()
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: p.hostsFor(keys, repo)})
	start := time.Now()
	img, err := p.client.Pull(ctx, ref.String(), containerd.WithPullUnpack, containerd.WithPullSnapshotter(Snapshotter),
		containerd.WithResolver(resolver))
	if err != nil {
		return pulled{}, err
	}
	took := time.Since(start)
	size, _ := img.Size(ctx)
	slog.Info("imagepull: pulled", "image", ref.String(), "bytes", size, "took", took)
	return pulled{img: img, size: size, took: took}, nil
}

// hostsFor is the registry hosts of one pull, whose logins are looked up
// by the host asked (a mirror's own login first) and then by repository.
func (p *Puller) hostsFor(keys Keyring, repo string) docker.RegistryHosts {
	return p.regs.hosts(p.http, func(host string) (string, string, error) {
		c, ok := keys.Lookup(host, "")
		if !ok {
			c, _ = keys.Lookup("", repo)
		}
		return c.Username, c.Password, nil
	})
}

// keyring reads the pod's pull secrets (its own, and through admission its
// ServiceAccount's); a missing one is skipped with an event, as the
// kubelet does, since the image may need no login.
func (p *Puller) keyring(ctx context.Context, pod *corev1.Pod) (Keyring, error) {
	var k Keyring
	for _, ref := range pod.Spec.ImagePullSecrets {
		if ref.Name == "" {
			continue
		}
		s, err := p.secrets(ctx, pod.Namespace, ref.Name)
		if err != nil {
			p.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedToRetrieveImagePullSecret",
				"Unable to retrieve some image pull secrets (%s); attempting to pull the image may not succeed.", ref.Name)
			continue
		}
		creds, err := ParseSecret(s)
		if err != nil {
			return nil, err
		}
		k = append(k, creds...)
	}
	return k, nil
}

func (p *Puller) used(name string) {
	p.mu.Lock()
	p.lastUsed[name] = time.Now()
	p.mu.Unlock()
}

// explain says why a pull failed and what would make it work.
func explain(ref reference.Named, keys Keyring, err error) string {
	host := reference.Domain(ref)
	text := err.Error()
	var hint string
	switch {
	case errors.Is(err, docker.ErrInvalidAuthorization) || strings.Contains(text, "401 Unauthorized"):
		if c, ok := keys.Lookup(host, ref.Name()); ok {
			hint = fmt.Sprintf("the registry %s refused the login of user %q from secret %s (401 Unauthorized): check the secret's username and password", host, c.Username, c.Secret)
		} else {
			hint = fmt.Sprintf("the registry %s wants a login (401 Unauthorized) and the pod has none for it: create one with `kubectl create secret docker-registry NAME --docker-server=%s --docker-username=USER --docker-password=PASSWORD` and name it in the pod's imagePullSecrets or its ServiceAccount's", host, host)
		}
	case errdefs.IsNotFound(err):
		hint = fmt.Sprintf("%s has no image %s: check its name and tag", host, ref.String())
	case strings.Contains(text, "x509:") || strings.Contains(text, "certificate"):
		hint = fmt.Sprintf("the node does not trust the certificate of %s: give its CA with `petrel node --registry-ca FILE`, or reach it over plain HTTP with --insecure-registry %s", host, host)
	case strings.Contains(text, "HTTP response to HTTPS client"):
		hint = fmt.Sprintf("%s speaks plain HTTP: start the node with --insecure-registry %s", host, host)
	case strings.Contains(text, "connection refused") || strings.Contains(text, "no such host") || strings.Contains(text, "i/o timeout"):
		hint = fmt.Sprintf("the node cannot reach %s: check the name and the network, give a mirror with --registry-mirror %s=URL, or load the image with `petrelctl image import FILE.tar`", host, host)
	}
	if hint == "" {
		return fmt.Sprintf("pull %s: %v", ref.String(), err)
	}
	return fmt.Sprintf("pull %s: %s (%v)", ref.String(), hint, err)
}

// quietLog drops the containerd client's own log lines.
var quietLog = func() *log.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}()
