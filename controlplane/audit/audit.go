// Package audit records who did what to the API, in Kubernetes' audit
// format: a policy file (audit.k8s.io/v1 Policy: levels None, Metadata,
// Request, RequestResponse; stages and omitStages; rules by user, group,
// verb, resource, namespace and path) decides for each request what is
// kept, and the events go as JSON lines to a file that is rotated by size
// and age. Policy matching and the event encoding are k8s.io/apiserver's;
// this package follows one request through its stages.
//
// The request path only fills an event and queues it: encoding and the
// write happen on one background goroutine (k8s.io/apiserver's batching
// backend), so a slow disk does not slow requests. When the queue is full
// events are dropped and counted, as Kubernetes' batch mode does.
package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/natefinch/lumberjack.v2"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	k8saudit "k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/plugin/pkg/audit/buffered"
	auditlog "k8s.io/apiserver/plugin/pkg/audit/log"
)

// Options configure the audit log.
type Options struct {
	// PolicyFile is an audit.k8s.io/v1 Policy; empty: DefaultPolicy.
	PolicyFile string
	// LogPath is where events go as JSON lines; "-" is standard output.
	LogPath string
	// MaxSizeMB rotates the file when it grows past this many megabytes;
	// MaxBackups and MaxAgeDays bound the rotated files kept (0: no bound).
	MaxSizeMB, MaxBackups, MaxAgeDays int
}

// DefaultPolicy is the policy without a policy file: every request at
// Metadata level (who, what, when, the answer's code) but the reads the
// cluster's own components make all the time and the health probes, and
// without the RequestReceived stage, which would double the log.
const DefaultPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/livez*", "/readyz*", "/version", "/metrics", "/openapi/*"]
- level: None
  verbs: [get, list, watch]
  userGroups: ["system:nodes", "system:masters"]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
  verbs: [get, update]
- level: Metadata
`

// Logger is a running audit log.
type Logger struct {
	eval    k8saudit.PolicyRuleEvaluator
	backend k8saudit.Backend
	stop    chan struct{}
	closer  io.Closer
	events  *prometheus.CounterVec
}

// New opens the log opts describe and starts its writer; Close stops it.
func New(opts Options, reg prometheus.Registerer) (*Logger, error) {
	var pol *auditinternal.Policy
	var err error
	if opts.PolicyFile != "" {
		pol, err = policy.LoadPolicyFromFile(opts.PolicyFile)
	} else {
		pol, err = policy.LoadPolicyFromBytes([]byte(DefaultPolicy))
	}
	if err != nil {
		return nil, fmt.Errorf("audit policy: %w", err)
	}
	var out io.Writer
	var closer io.Closer
	if opts.LogPath == "-" {
		out = os.Stdout
	} else {
		if err := os.MkdirAll(filepath.Dir(opts.LogPath), 0o700); err != nil {
			return nil, fmt.Errorf("audit log directory: %w", err)
		}
		// The log names users and objects: readable by root only, like the
		// rest of the data directory's secrets.
		f, err := os.OpenFile(opts.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		_ = f.Close()
		lj := &lumberjack.Logger{Filename: opts.LogPath, MaxSize: opts.MaxSizeMB, MaxBackups: opts.MaxBackups, MaxAge: opts.MaxAgeDays, Compress: false}
		out, closer = lj, lj
	}
	l := &Logger{
		eval:   policy.NewPolicyRuleEvaluator(pol),
		stop:   make(chan struct{}),
		closer: closer,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiserver_audit_event_total",
			Help: "Audit events queued for the log, by level."}, []string{"level"}),
	}
	if reg != nil {
		reg.MustRegister(l.events)
	}
	l.backend = buffered.NewBackend(auditlog.NewBackend(out, auditlog.FormatJson, auditv1.SchemeGroupVersion), buffered.BatchConfig{
		BufferSize: 10000, MaxBatchSize: 400, MaxBatchWait: 30 * time.Millisecond,
	})
	if err := l.backend.Run(l.stop); err != nil {
		return nil, fmt.Errorf("audit backend: %w", err)
	}
	return l, nil
}

// Close writes what is queued and closes the file.
func (l *Logger) Close() {
	close(l.stop)
	l.backend.Shutdown()
	if l.closer != nil {
		_ = l.closer.Close()
	}
}

// Request is what a request's events are made of: who asked, for what.
type Request struct {
	User            User
	Verb            string
	RequestURI      string
	Path            string
	SourceIPs       []string
	UserAgent       string
	ResourceRequest bool
	APIGroup        string
	APIVersion      string
	Resource        string
	Subresource     string
	Namespace       string
	Name            string
}

// User is an authenticated user.
type User struct {
	Name   string
	UID    string
	Groups []string
}

func (u User) info() authnv1.UserInfo {
	return authnv1.UserInfo{Username: u.Name, UID: u.UID, Groups: u.Groups}
}

// Record follows one request; nil when the policy keeps nothing of it (its
// methods do nothing on nil).
type Record struct {
	l     *Logger
	level auditinternal.Level
	omit  map[auditinternal.Stage]bool
	mu    sync.Mutex
	ev    auditinternal.Event
	done  bool
}

// Begin evaluates the policy for req and, when it keeps anything, emits
// the RequestReceived stage. auditID is the client's Audit-ID header, if
// it sent one.
func (l *Logger) Begin(req Request, auditID string, received time.Time) *Record {
	if l == nil {
		return nil
	}
	attrs := authorizer.AttributesRecord{
		User: &user.DefaultInfo{Name: req.User.Name, UID: req.User.UID, Groups: req.User.Groups},
		Verb: req.Verb, Namespace: req.Namespace, APIGroup: req.APIGroup, APIVersion: req.APIVersion,
		Resource: req.Resource, Subresource: req.Subresource, Name: req.Name,
		ResourceRequest: req.ResourceRequest, Path: req.Path,
	}
	cfg := l.eval.EvaluatePolicyRule(attrs)
	if cfg.Level == auditinternal.LevelNone {
		return nil
	}
	rec := &Record{l: l, level: cfg.Level, omit: map[auditinternal.Stage]bool{}}
	for _, s := range cfg.OmitStages {
		rec.omit[s] = true
	}
	if auditID == "" {
		auditID = string(uuid.NewUUID())
	}
	rec.ev = auditinternal.Event{
		Level: cfg.Level, AuditID: types.UID(auditID), RequestURI: req.RequestURI, Verb: req.Verb,
		User: req.User.info(), SourceIPs: req.SourceIPs, UserAgent: req.UserAgent,
		RequestReceivedTimestamp: metav1.NewMicroTime(received),
	}
	if req.ResourceRequest {
		rec.ev.ObjectRef = &auditinternal.ObjectReference{
			Resource: req.Resource, Namespace: req.Namespace, Name: req.Name,
			APIGroup: req.APIGroup, APIVersion: req.APIVersion, Subresource: req.Subresource,
		}
	}
	rec.emit(auditinternal.StageRequestReceived)
	return rec
}

// Level is the level the policy chose ("" for nil).
func (r *Record) Level() auditinternal.Level {
	if r == nil {
		return ""
	}
	return r.level
}

// WantsRequest says whether the request's body is kept.
func (r *Record) WantsRequest() bool {
	return r != nil && r.level.GreaterOrEqual(auditinternal.LevelRequest)
}

// WantsResponse says whether the response's body is kept.
func (r *Record) WantsResponse() bool {
	return r != nil && r.level.GreaterOrEqual(auditinternal.LevelRequestResponse)
}

// SetImpersonated records the user the request acts as.
func (r *Record) SetImpersonated(u User) {
	if r == nil {
		return
	}
	info := u.info()
	r.mu.Lock()
	r.ev.ImpersonatedUser = &info
	r.mu.Unlock()
}

// SetRequestObject keeps the request's body (JSON) at Request level and up.
func (r *Record) SetRequestObject(json []byte) {
	if !r.WantsRequest() || len(json) == 0 {
		return
	}
	r.mu.Lock()
	r.ev.RequestObject = &runtime.Unknown{Raw: json, ContentType: runtime.ContentTypeJSON}
	r.mu.Unlock()
}

// Annotate adds an annotation to the request's events.
func (r *Record) Annotate(key, value string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ev.Annotations == nil {
		r.ev.Annotations = map[string]string{}
	}
	if _, ok := r.ev.Annotations[key]; !ok {
		r.ev.Annotations[key] = value
	}
}

// ResponseStarted emits the stage of a long-running request (a watch)
// whose response has begun.
func (r *Record) ResponseStarted(code int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.ev.ResponseStatus = &metav1.Status{Code: int32(code)}
	r.mu.Unlock()
	r.emit(auditinternal.StageResponseStarted)
}

// Finish emits ResponseComplete (or Panic) with the answer: its code, the
// Status of an error, and at RequestResponse level the body (JSON).
func (r *Record) Finish(code int, status *metav1.Status, response []byte, panicked bool) {
	if r == nil {
		return
	}
	r.mu.Lock()
	if status == nil {
		status = &metav1.Status{Code: int32(code)}
	}
	if status.Code == 0 {
		status.Code = int32(code)
	}
	r.ev.ResponseStatus = status
	if r.WantsResponse() && len(response) > 0 {
		r.ev.ResponseObject = &runtime.Unknown{Raw: response, ContentType: runtime.ContentTypeJSON}
	}
	r.mu.Unlock()
	if panicked {
		r.emit(auditinternal.StagePanic)
		return
	}
	r.emit(auditinternal.StageResponseComplete)
}

func (r *Record) emit(stage auditinternal.Stage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done || r.omit[stage] {
		return
	}
	if stage == auditinternal.StageResponseComplete || stage == auditinternal.StagePanic {
		r.done = true
	}
	r.ev.Stage = stage
	r.ev.StageTimestamp = metav1.NewMicroTime(time.Now())
	ev := r.ev
	if !r.l.backend.ProcessEvents(&ev) {
		slog.Warn("audit: event not queued", "stage", stage, "auditID", ev.AuditID)
	}
	r.l.events.WithLabelValues(string(r.level)).Inc()
}

type recordKey struct{}

// WithRecord puts rec into ctx, for AddAnnotation.
func WithRecord(ctx context.Context, rec *Record) context.Context {
	if rec == nil {
		return ctx
	}
	return context.WithValue(ctx, recordKey{}, rec)
}

// AddAnnotation annotates the audit events of the request ctx belongs to
// (admission plugins explain their decisions this way); without an audit
// record it does nothing.
func AddAnnotation(ctx context.Context, key, value string) {
	if rec, ok := ctx.Value(recordKey{}).(*Record); ok {
		rec.Annotate(key, value)
	}
}
