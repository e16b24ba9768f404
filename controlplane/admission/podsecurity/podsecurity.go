// Package podsecurity is Pod Security admission: the namespace labels
// pod-security.kubernetes.io/enforce, audit and warn (with their -version)
// judge pods and the templates of pod controllers by the Pod Security
// Standards. The judging is Kubernetes' own library
// (k8s.io/pod-security-admission); this package feeds it Petrel's admission
// attributes, reads namespaces and pods from the registry's cache, and hands
// its answer back as a refusal, warnings and audit annotations.
package podsecurity

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	psadmission "k8s.io/pod-security-admission/admission"
	psaconfig "k8s.io/pod-security-admission/admission/api"
	"k8s.io/pod-security-admission/admission/api/load"
	psaapi "k8s.io/pod-security-admission/api"
	psametrics "k8s.io/pod-security-admission/metrics"
	"k8s.io/pod-security-admission/policy"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/audit"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// SystemNamespace is exempt under the default configuration: the cluster's
// own components may need the host's namespaces, as in Kubernetes
// distributions that turn enforcement on.
const SystemNamespace = "kube-system"

// Options choose the configuration.
type Options struct {
	// ConfigFile is a PodSecurityConfiguration file
	// (pod-security.admission.config.k8s.io/v1), used as it is; empty: the
	// default below.
	ConfigFile string
	// DefaultLevel is the level (privileged, baseline, restricted) that
	// namespaces without labels are enforced, audited and warned at, at the
	// latest version, with kube-system exempt. Ignored with ConfigFile.
	DefaultLevel string
}

// Config is the PodSecurityConfiguration opts describe.
func Config(opts Options) (*psaconfig.PodSecurityConfiguration, error) {
	if opts.ConfigFile != "" {
		data, err := os.ReadFile(opts.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("reading the pod security configuration: %w", err)
		}
		cfg, err := load.LoadFromData(data)
		if err != nil {
			return nil, fmt.Errorf("pod security configuration %s: %w", opts.ConfigFile, err)
		}
		return cfg, nil
	}
	cfg, err := load.LoadFromData(nil)
	if err != nil {
		return nil, fmt.Errorf("default pod security configuration: %w", err)
	}
	level := opts.DefaultLevel
	if level == "" {
		level = string(psaapi.LevelPrivileged)
	}
	if _, err := psaapi.ParseLevel(level); err != nil {
		return nil, fmt.Errorf("pod security default level %q: want privileged, baseline or restricted", level)
	}
	cfg.Defaults.Enforce, cfg.Defaults.Audit, cfg.Defaults.Warn = level, level, level
	cfg.Exemptions.Namespaces = append(cfg.Exemptions.Namespaces, SystemNamespace)
	return cfg, nil
}

// ServedVersion is the Kubernetes version whose policies "latest" means:
// the one Petrel serves.
var ServedVersion = psaapi.MajorMinorVersion(1, 32)

// newEvaluator judges pods with the policies up to ServedVersion, not the
// library's own latest: v0.37's forbids probe and hook hosts (a 1.34
// check), which refused the conformance suite's pods.
func newEvaluator() (policy.Evaluator, error) {
	v := ServedVersion
	return policy.NewEvaluator(policy.DefaultChecks(), &v)
}

// Plugin is the PodSecurity validating admission plugin.
type Plugin struct {
	delegate *psadmission.Admission
}

// New builds the plugin over reg's namespaces and pods; its counters go to
// metrics when that is not nil.
func New(cfg *psaconfig.PodSecurityConfiguration, reg *generic.Registry, metrics prometheus.Registerer) (*Plugin, error) {
	evaluator, err := newEvaluator()
	if err != nil {
		return nil, fmt.Errorf("pod security checks: %w", err)
	}
	a := &psadmission.Admission{
		Configuration:   cfg,
		Evaluator:       evaluator,
		Metrics:         newRecorder(metrics),
		NamespaceGetter: namespaces{reg},
		PodLister:       pods{reg},
	}
	if err := a.CompleteConfiguration(); err != nil {
		return nil, fmt.Errorf("pod security configuration: %w", err)
	}
	if err := a.ValidateConfiguration(); err != nil {
		return nil, fmt.Errorf("pod security configuration: %w", err)
	}
	return &Plugin{delegate: a}, nil
}

// Name names the plugin as Kubernetes does.
func (p *Plugin) Name() string { return "PodSecurity" }

// Handles creates and updates.
func (p *Plugin) Handles(op admission.Operation) bool {
	return op == admission.Create || op == admission.Update
}

// Validate judges pods, pod controllers and namespaces' label changes.
func (p *Plugin) Validate(ctx context.Context, a *admission.Attributes) error {
	gr := a.Resource.GroupResource()
	if gr != corev1.Resource("namespaces") && !p.delegate.PodSpecExtractor.HasPodSpec(gr) {
		return nil
	}
	attrs := &psaapi.AttributesRecord{
		Name: a.Name, Namespace: a.Namespace, Kind: a.Kind, Resource: a.Resource, Subresource: a.Subresource,
		Operation: admissionv1.Operation(a.Operation), Object: a.Object, OldObject: a.OldObject, Username: a.User.Name,
	}
	if a.Operation == admission.Create {
		attrs.OldObject = nil
	}
	res := p.delegate.Validate(ctx, attrs)
	for _, w := range res.Warnings {
		admission.Warn(ctx, w)
	}
	for k, v := range res.AuditAnnotations {
		audit.AddAnnotation(ctx, "pod-security.kubernetes.io/"+k, v)
	}
	if res.Allowed {
		return nil
	}
	err := apierrors.NewForbidden(gr, a.Name, errors.New("Not allowed by PodSecurity"))
	if st := res.Result; st != nil {
		if st.Message != "" {
			err.ErrStatus.Message = st.Message
		}
		if st.Reason != "" {
			err.ErrStatus.Reason = st.Reason
		}
		if st.Code != 0 {
			err.ErrStatus.Code = st.Code
		}
		if st.Details != nil {
			err.ErrStatus.Details = st.Details
		}
	}
	return err
}

// namespaces reads namespaces from the registry's watch cache.
type namespaces struct{ reg *generic.Registry }

func (n namespaces) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	st := n.reg.Store(corev1.SchemeGroupVersion.WithResource("namespaces"))
	if st == nil {
		return nil, errors.New("namespaces are not served")
	}
	obj, err := st.Lookup(ctx, "", name)
	if err != nil {
		return nil, err
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return nil, fmt.Errorf("namespace %s is a %T", name, obj)
	}
	return ns, nil
}

// pods lists a namespace's pods from the watch cache, for the warnings a
// namespace's new enforce label gives about the pods already there.
type pods struct{ reg *generic.Registry }

func (p pods) ListPods(ctx context.Context, namespace string) ([]*corev1.Pod, error) {
	st := p.reg.Store(corev1.SchemeGroupVersion.WithResource("pods"))
	if st == nil {
		return nil, errors.New("pods are not served")
	}
	objs, err := st.CachedList(ctx, namespace)
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if pod, ok := o.(*corev1.Pod); ok {
			out = append(out, pod)
		}
	}
	return out, nil
}

// recorder counts evaluations under Kubernetes' metric names, on the
// server's own registry (the library's recorder registers with
// component-base's, which Petrel's /metrics does not serve).
type recorder struct {
	evaluations, exemptions, errors *prometheus.CounterVec
}

func newRecorder(reg prometheus.Registerer) *recorder {
	r := &recorder{
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pod_security_evaluations_total",
			Help: "Policy evaluations of Pod Security admission, by decision, level, version and mode."},
			[]string{"decision", "policy_level", "policy_version", "mode", "request_operation", "resource", "subresource"}),
		exemptions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pod_security_exemptions_total",
			Help: "Requests Pod Security admission let through as exempt."},
			[]string{"request_operation", "resource", "subresource"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pod_security_errors_total",
			Help: "Requests Pod Security admission could not judge (fatal: refused)."},
			[]string{"fatal", "request_operation", "resource", "subresource"}),
	}
	if reg != nil {
		reg.MustRegister(r.evaluations, r.exemptions, r.errors)
	}
	return r
}

func (r *recorder) RecordEvaluation(d psametrics.Decision, lv psaapi.LevelVersion, mode psametrics.Mode, a psaapi.Attributes) {
	r.evaluations.WithLabelValues(string(d), string(lv.Level), lv.Version.String(), string(mode),
		string(a.GetOperation()), a.GetResource().Resource, a.GetSubresource()).Inc()
}

func (r *recorder) RecordExemption(a psaapi.Attributes) {
	r.exemptions.WithLabelValues(string(a.GetOperation()), a.GetResource().Resource, a.GetSubresource()).Inc()
}

func (r *recorder) RecordError(fatal bool, a psaapi.Attributes) {
	r.errors.WithLabelValues(fmt.Sprint(fatal), string(a.GetOperation()), a.GetResource().Resource, a.GetSubresource()).Inc()
}
