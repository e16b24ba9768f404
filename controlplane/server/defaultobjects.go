package server

import (
	"context"
	"fmt"

	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap"
	"k8s.io/client-go/kubernetes"

	"github.com/petrel-project/petrel/controlplane/registry/scheduling"
)

// ensureDefaultObjects creates the objects Kubernetes' API server makes at
// start in the groups of issue 21 item 5: the system priority classes and
// API priority and fairness' mandatory and suggested configuration (taken
// from k8s.io/apiserver's own bootstrap list), and the RuntimeClasses crun
// and runc of issue 23. An object already there is
// left as it is, so an operator's change to a suggested one survives.
func ensureDefaultObjects(ctx context.Context, cs kubernetes.Interface) error {
	opts := metav1.CreateOptions{FieldManager: "petrel-bootstrap"}
	exists := func(err error) bool { return err == nil || apierrors.IsAlreadyExists(err) }
	for _, handler := range []string{"crun", "runc"} {
		// Every node runs its pods with crun or runc through containerd's
		// runc shim; a class per runtime lets a pod choose.
		rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: handler}, Handler: handler}
		if _, err := cs.NodeV1().RuntimeClasses().Create(ctx, rc, opts); !exists(err) {
			return fmt.Errorf("RuntimeClass %s: %w", handler, err)
		}
	}
	for _, pc := range scheduling.SystemPriorityClasses() {
		if _, err := cs.SchedulingV1().PriorityClasses().Create(ctx, pc, opts); !exists(err) {
			return fmt.Errorf("PriorityClass %s: %w", pc.Name, err)
		}
	}
	for _, pl := range append(append(bootstrap.MandatoryPriorityLevelConfigurations[:0:0], bootstrap.MandatoryPriorityLevelConfigurations...), bootstrap.SuggestedPriorityLevelConfigurations...) {
		if _, err := cs.FlowcontrolV1().PriorityLevelConfigurations().Create(ctx, pl.DeepCopy(), opts); !exists(err) {
			return fmt.Errorf("PriorityLevelConfiguration %s: %w", pl.Name, err)
		}
	}
	for _, fs := range append(append(bootstrap.MandatoryFlowSchemas[:0:0], bootstrap.MandatoryFlowSchemas...), bootstrap.SuggestedFlowSchemas...) {
		if _, err := cs.FlowcontrolV1().FlowSchemas().Create(ctx, fs.DeepCopy(), opts); !exists(err) {
			return fmt.Errorf("FlowSchema %s: %w", fs.Name, err)
		}
	}
	return nil
}
