// Package flowcontrol holds the strategies of flowcontrol.apiserver.k8s.io/v1
// FlowSchemas and PriorityLevelConfigurations: defaults, validation and
// kubectl's columns for the generic store. The objects are served; requests
// are not yet classified by them.
package flowcontrol

import "github.com/petrel-project/petrel/controlplane/registry/generic"

// Resources are the group's kinds.
func Resources() []*generic.Resource {
	return []*generic.Resource{flowSchemaResource(), priorityLevelConfigurationResource()}
}
