package webhook

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/util/proxy"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/admission"
)

// userInfo is the requester as k8s.io/apiserver names users.
func userInfo(a *admission.Attributes) user.Info {
	if !a.HasUser {
		return &user.DefaultInfo{}
	}
	return &user.DefaultInfo{Name: a.User.Name, UID: a.User.UID, Groups: a.User.Groups}
}

// options are the request's options as an AdmissionReview carries them
// (request.options): CreateOptions, UpdateOptions or DeleteOptions.
func options(a *admission.Attributes) runtime.Object {
	var dryRun []string
	if a.DryRun {
		dryRun = []string{metav1.DryRunAll}
	}
	var o runtime.Object
	var kind string
	switch a.Operation {
	case admission.Create:
		o, kind = &metav1.CreateOptions{DryRun: dryRun}, "CreateOptions"
	case admission.Update:
		o, kind = &metav1.UpdateOptions{DryRun: dryRun}, "UpdateOptions"
	case admission.Delete:
		o, kind = &metav1.DeleteOptions{DryRun: dryRun}, "DeleteOptions"
	default:
		return nil
	}
	o.GetObjectKind().SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind(kind))
	return o
}

// warnings passes upstream's warnings (webhooks' response.warnings, a
// policy binding's Warn action) to Petrel's sink, which makes them Warning
// headers.
type warnings struct{ ctx context.Context }

func (w warnings) AddWarning(_, text string) { admission.Warn(w.ctx, text) }

func withWarnings(ctx context.Context) context.Context {
	return warning.WithWarningRecorder(ctx, warnings{ctx})
}

// endpointResolver reaches a webhook's Service at one of its ready
// endpoints (from the Service's EndpointSlices), chosen at random on each
// call, rather than at the ClusterIP: the server runs on the host, outside
// the nodes' socket load balancers, as kube-apiserver does with
// --enable-aggregator-routing. Its Service and EndpointSlice informers start
// with the first webhook that names a Service, so a server without one
// holds no copy of every Service and slice.
type endpointResolver struct {
	factory informers.SharedInformerFactory
	stop    <-chan struct{}

	once     sync.Once
	err      error
	services corelisters.ServiceLister
	slices   proxy.EndpointSliceGetter
}

// NewServiceResolver is the resolver of Service references over the
// factory's informers (started on first use; stop ends them), shared by
// admission webhooks and custom resource conversion webhooks.
func NewServiceResolver(f informers.SharedInformerFactory, stop <-chan struct{}) webhookutil.ServiceResolver {
	return &endpointResolver{factory: f, stop: stop}
}

// resolveTimeout bounds the wait for the first sync of Services and slices.
const resolveTimeout = 10 * time.Second

func (r *endpointResolver) start() {
	svcs := r.factory.Core().V1().Services()
	svcInformer := svcs.Informer()
	sliceInformer := r.factory.Discovery().V1().EndpointSlices()
	if r.slices, r.err = proxy.NewEndpointSliceIndexerGetter(sliceInformer); r.err != nil {
		r.err = fmt.Errorf("endpoint slice index: %w", r.err)
		return
	}
	r.services = svcs.Lister()
	r.factory.Start(r.stop)
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), svcInformer.HasSynced, sliceInformer.Informer().HasSynced) {
		// Not fatal: the informers keep syncing; this call fails.
		slog.Warn("admission webhooks: Services and EndpointSlices not synced yet")
	}
}

// ResolveEndpoint is the URL of one ready endpoint of the Service's port.
func (r *endpointResolver) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	r.once.Do(r.start)
	if r.err != nil {
		return nil, r.err
	}
	u, err := proxy.ResolveEndpoint(r.services, r.slices, namespace, name, port)
	if err != nil {
		return nil, fmt.Errorf("service %s/%s port %d: %w", namespace, name, port, err)
	}
	return u, nil
}
