package webhook

import (
	"context"
	"fmt"
	"net/url"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/util/proxy"
	"k8s.io/apiserver/pkg/warning"
	coreinformers "k8s.io/client-go/informers/core/v1"

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
	switch a.Operation {
	case admission.Create:
		o = &metav1.CreateOptions{DryRun: dryRun}
	case admission.Update:
		o = &metav1.UpdateOptions{DryRun: dryRun}
	case admission.Delete:
		o = &metav1.DeleteOptions{DryRun: dryRun}
	default:
		return nil
	}
	kind := fmt.Sprintf("%T", o)[len("*v1."):]
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

// endpointResolver is a webhook Service's address: a ready endpoint's,
// chosen at random on each call.
type endpointResolver struct {
	services coreinformers.ServiceInformer
	slices   proxy.EndpointSliceGetter
}

// ResolveEndpoint is the URL of one ready endpoint of the Service's port.
func (r *endpointResolver) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	u, err := proxy.ResolveEndpoint(r.services.Lister(), r.slices, namespace, name, port)
	if err != nil {
		return nil, fmt.Errorf("service %s/%s port %d: %w", namespace, name, port, err)
	}
	return u, nil
}
