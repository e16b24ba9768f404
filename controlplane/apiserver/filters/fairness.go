package filters

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authentication/user"
	apirequest "k8s.io/apiserver/pkg/endpoints/request"
	utilflowcontrol "k8s.io/apiserver/pkg/util/flowcontrol"
	fcrequest "k8s.io/apiserver/pkg/util/flowcontrol/request"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/rbac"
)

// queueWaitLimit is how long a request may wait in its priority level's
// queue: a quarter of the 60 s a request is given, as Kubernetes.
const queueWaitLimit = 15 * time.Second

// Fairness is API Priority and Fairness: each request is classified by the
// cluster's FlowSchemas into a PriorityLevelConfiguration, which holds a
// share of the server's concurrency and queues (or rejects) past it, so
// that one noisy client cannot starve kubectl, the nodes or the
// controllers. The classification, the shares and the fair queuing are
// k8s.io/apiserver's own controller, fed from this server's flowcontrol
// objects through a loopback client; this type adapts Petrel's requests to
// it. Long-running requests (watches, logs, exec) are not held to it.
type Fairness struct {
	ctl      utilflowcontrol.Interface
	factory  informers.SharedInformerFactory
	rejected *prometheus.CounterVec
}

// NewFairness builds the controller over the flowcontrol objects of the
// server cfg reaches, sharing serverConcurrency seats (Kubernetes: the sum
// of --max-requests-inflight and --max-mutating-requests-inflight).
func NewFairness(cfg *rest.Config, serverConcurrency int, reg prometheus.Registerer) (*Fairness, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("priority and fairness client: %w", err)
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	f := &Fairness{
		ctl:     utilflowcontrol.New(factory, cs.FlowcontrolV1(), serverConcurrency),
		factory: factory,
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiserver_flowcontrol_rejected_requests_total",
			Help: "Requests answered 429 by API Priority and Fairness, by priority level and flow schema."}, []string{"priority_level", "flow_schema"}),
	}
	if reg != nil {
		reg.MustRegister(f.rejected)
	}
	return f, nil
}

// Run follows the configuration until ctx ends.
func (f *Fairness) Run(ctx context.Context) {
	f.factory.Start(ctx.Done())
	if err := f.ctl.Run(ctx.Done()); err != nil && ctx.Err() == nil {
		slog.Error("priority and fairness controller stopped", "err", err)
	}
}

// Serve runs serve for r when its priority level lets it (at once, or
// after waiting in its queue) and answers 429 with Retry-After when not.
// The response names the matched FlowSchema and priority level by UID in
// Kubernetes' X-Kubernetes-PF-* headers.
func (f *Fairness) Serve(w http.ResponseWriter, r *http.Request, attrs rbac.Attributes, serve func()) error {
	if longRunning(r) {
		serve()
		return nil
	}
	u, ok := admission.UserFrom(r.Context())
	if !ok {
		// The health and version paths are served without credentials;
		// Kubernetes classifies them as the anonymous user's.
		u = admission.User{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}}
	}
	digest := utilflowcontrol.RequestDigest{RequestInfo: requestInfo(r, attrs), User: &user.DefaultInfo{Name: u.Name, UID: u.UID, Groups: u.Groups}}
	var fsName, plName string
	note := func(fs *flowcontrolv1.FlowSchema, pl *flowcontrolv1.PriorityLevelConfiguration, _ string) {
		fsName, plName = fs.Name, pl.Name
		w.Header().Set(flowcontrolv1.ResponseHeaderMatchedFlowSchemaUID, string(fs.UID))
		w.Header().Set(flowcontrolv1.ResponseHeaderMatchedPriorityLevelConfigurationUID, string(pl.UID))
	}
	// Every request takes one seat: Kubernetes weighs lists by the objects
	// they may return; Petrel serves lists from its watch cache, whose cost
	// does not grow with the collection the way a read from etcd does.
	estimate := func() fcrequest.WorkEstimate { return fcrequest.WorkEstimate{InitialSeats: 1} }
	waitCtx, cancel := context.WithTimeout(r.Context(), queueWaitLimit)
	defer cancel()
	served := false
	f.ctl.Handle(waitCtx, digest, note, estimate, func(bool) {}, func() {
		served = true
		serve()
	})
	if served {
		return nil
	}
	f.rejected.WithLabelValues(plName, fsName).Inc()
	return apierrors.NewTooManyRequests("Too many requests, please try again later.", 1)
}

// requestInfo is Kubernetes' RequestInfo for the attributes authorization
// read from r.
func requestInfo(r *http.Request, a rbac.Attributes) *apirequest.RequestInfo {
	info := &apirequest.RequestInfo{
		IsResourceRequest: a.ResourceRequest, Path: r.URL.Path, Verb: a.Verb,
		APIGroup: a.APIGroup, Namespace: a.Namespace, Resource: a.Resource, Subresource: a.Subresource, Name: a.Name,
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) > 0 {
		info.APIPrefix = parts[0]
	}
	switch {
	case info.APIPrefix == "api" && len(parts) > 1:
		info.APIVersion = parts[1]
	case info.APIPrefix == "apis" && len(parts) > 2:
		info.APIVersion = parts[2]
	}
	if a.ResourceRequest {
		info.Parts = []string{a.Resource}
		if a.Name != "" {
			info.Parts = append(info.Parts, a.Name)
		}
		if a.Subresource != "" {
			info.Parts = append(info.Parts, a.Subresource)
		}
	}
	return info
}
