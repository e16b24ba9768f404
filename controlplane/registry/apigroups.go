package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/flowcontrol"
	"github.com/petrel-project/petrel/controlplane/registry/nodeapi"
	"github.com/petrel-project/petrel/controlplane/registry/scheduling"
	"github.com/petrel-project/petrel/controlplane/registry/storage"
)

// apiGroupResources are the kinds added for Kubernetes 1.32's built-in
// groups beyond the workloads (issue 21 item 5): ReplicationControllers
// and PodTemplates here, priority and runtime classes, storage objects and
// the API priority-and-fairness objects in their groups' packages.
func apiGroupResources() []*Resource {
	out := []*Resource{replicationControllerResource(), podTemplateResource()}
	out = append(out, scheduling.Resources()...)
	out = append(out, nodeapi.Resources()...)
	out = append(out, storage.Resources()...)
	return append(out, flowcontrol.Resources()...)
}
